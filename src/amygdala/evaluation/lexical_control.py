"""Lexical control: texts that *name* an emotion without expressing it should not light up its vector.

``data/lexical_control.jsonl`` holds hand-written control texts, five per concept of the bundled sample
(``{"concept": "sad", "text": "The word 'sad' has three letters."}``): spelling, grammar, labels, product names.
For each concept, the threshold is set where 90% of its positive texts score at or above it (``TRUE_POSITIVE_RATE``;
the lower 10% quantile of the positives' scores), and the false-positive rate is the share of its control texts
scoring at or above that threshold. The share of its real negatives above the same threshold is reported beside
it: a control rate far above the negatives' means the vector reads the word, not the emotion.

Scores are whatever the caller measures on one scale for both sets, e.g. the held-out mean z of ``amygdala eval``
or the out-of-fold mean z of ``crossval.cross_validate`` (control texts scored by every fold's vectors).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import torch

from amygdala.evaluation.metrics import Interval, PairedDifference, PairingError, paired_difference, percentile_interval
from amygdala.training.splits import LabelledTexts

CONTROL_FILE = "lexical_control.jsonl"
TRUE_POSITIVE_RATE = 0.9


@dataclass(frozen=True)
class ControlText:
    """A text that names ``concept`` without expressing it."""

    concept: str
    text: str


@dataclass(frozen=True)
class ConceptControl:
    """One concept: the threshold at 90% true positives, and the control texts' and negatives' rates above it."""

    concept: str
    threshold: float
    false_positive_rate: float
    negative_rate: float
    n_control: int
    n_positive: int


@dataclass(frozen=True)
class LexicalControl:
    """Per concept, and over every control text (``false_positive_rate``: control texts above their concept's
    threshold / all control texts measured; ``negative_rate`` the mean of the concepts' negative rates)."""

    per_concept: tuple[ConceptControl, ...]
    false_positive_rate: float
    negative_rate: float
    n_texts: int
    true_positive_rate: float = TRUE_POSITIVE_RATE

    def summary(self) -> dict[str, Any]:
        return {"false_positive_rate": self.false_positive_rate, "negative_rate": self.negative_rate,
                "n_texts": self.n_texts, "true_positive_rate": self.true_positive_rate,
                "n_concepts": len(self.per_concept)}


def control_texts(concepts: Sequence[str]) -> tuple[ControlText, ...]:
    """The bundled control texts of ``concepts`` (the others' are left out), in file order."""
    text = resources.files("amygdala").joinpath("data", CONTROL_FILE).read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return tuple(ControlText(row["concept"], row["text"]) for row in rows if row["concept"] in concepts)


def _rate(scores: torch.Tensor, threshold: float) -> float:
    return float((scores >= threshold).double().mean()) if scores.numel() else math.nan


def lexical_control(scores: torch.Tensor, data: LabelledTexts, control_scores: torch.Tensor,
                    control: Sequence[ControlText]) -> LexicalControl:
    """``scores [n_texts, n_concepts]`` of ``data``'s texts and ``control_scores [n_control, n_concepts]`` of the
    ``control`` texts (concept columns as ``data.concepts``); NaN scores are left out."""
    per_concept, hits, measured = [], 0, 0
    for c, concept in enumerate(data.concepts):
        rows = [i for i, item in enumerate(control) if item.concept == concept]
        column = scores[:, c]
        positives = column[data.positive[:, c] & column.isfinite()]
        controls = control_scores[rows, c][control_scores[rows, c].isfinite()]
        if not rows or positives.numel() == 0 or controls.numel() == 0:
            continue
        threshold = float(torch.quantile(positives.double(), 1 - TRUE_POSITIVE_RATE, interpolation="lower"))
        negatives = column[data.negative[:, c] & column.isfinite()]
        per_concept.append(ConceptControl(concept, threshold, _rate(controls, threshold),
                                          _rate(negatives, threshold), int(controls.numel()),
                                          int(positives.numel())))
        hits += int((controls >= threshold).sum())
        measured += int(controls.numel())
    negative_rates = [entry.negative_rate for entry in per_concept if not math.isnan(entry.negative_rate)]
    return LexicalControl(tuple(per_concept), hits / measured if measured else math.nan,
                          sum(negative_rates) / len(negative_rates) if negative_rates else math.nan, measured)


def fpr_replicates(result: LexicalControl, n_boot: int, seed: int) -> torch.Tensor:
    """The overall false-positive rate on ``n_boot`` seeded draws of the concepts with replacement (a concept's
    control texts are drawn together: they share its threshold), ``[n_boot]``. The draws depend only on the
    number of concepts, ``n_boot`` and ``seed``, so two results over the same concepts share them."""
    hits = torch.tensor([entry.false_positive_rate * entry.n_control for entry in result.per_concept],
                        dtype=torch.float64)
    counts = torch.tensor([entry.n_control for entry in result.per_concept], dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    draws = torch.randint(0, len(counts), (n_boot, len(counts)), generator=generator)
    return hits[draws].sum(dim=1) / counts[draws].sum(dim=1)


def paired_fpr(a: LexicalControl, b: LexicalControl, n_boot: int = 1000, seed: int = 0) -> PairedDifference:
    """``a``'s false-positive rate minus ``b``'s with the CI over the same draws of the concepts (both must
    measure the same concepts)."""
    if [e.concept for e in a.per_concept] != [e.concept for e in b.per_concept]:
        raise PairingError("paired false-positive rates need two lexical controls over the same concepts")
    return paired_difference(a.false_positive_rate, fpr_replicates(a, n_boot, seed), b.false_positive_rate,
                             fpr_replicates(b, n_boot, seed))


def fpr_interval(result: LexicalControl, n_boot: int = 1000, seed: int = 0) -> Interval:
    """The overall false-positive rate with its 95% CI over draws of the concepts."""
    return percentile_interval(result.false_positive_rate, fpr_replicates(result, n_boot, seed))
