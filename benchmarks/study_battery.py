"""The study's battery figures beside CV and valence (``study_methods.py`` imports this): the lexical control's
false-positive rate, the arousal check, and the training option ``TrainOptions.lexical`` as fits.

``Battery.prepare`` pools, once per pooling rule at every layer, the lexical control texts, the EmoBank
sentences (``evaluation.arousal``), the hard negatives and the naming phrases (``training.lexical``).
``Battery.figures`` adds to a row: ``lexical_fpr`` (out-of-fold: the control texts scored by every fold's
vectors, threshold at 90% TPR of the out-of-fold positives) with its CI over draws of the concepts,
``lexical_negative_rate``, ``per_concept_fpr``, the arousal rho with its CI, and PC1/PC2 against lexicon valence
and concept arousal. ``lexical_fit`` gives a method's fit under a lexical rule, so cross-validation applies it per
fold (the hard negatives' mean enters every fold's negatives; they are never scored).

A further check (a battery package's figure) joins by adding a ``FigureHook`` to ``HOOKS``: a function of the
row's vectors and pooled inputs returning extra row fields.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from amygdala.evaluation.arousal import ArousalCheck, ArousalSentences, arousal_check, arousal_sentences
from amygdala.evaluation.crossval import CrossValidation, Fit
from amygdala.evaluation.lexical_control import (
    ControlText,
    LexicalControl,
    control_texts,
    fpr_interval,
    lexical_control,
)
from amygdala.forward.activation_cache import ActivationCache
from amygdala.forward.models import LoadedModel
from amygdala.forward.pooled import pool_texts
from amygdala.forward.pooling import PoolingSpec
from amygdala.training.directions import DirectionMethod
from amygdala.training.lexical import hard_negative_data, lexical_fit, naming_texts, word_directions
from amygdala.training.splits import LabelledTexts


@dataclass(frozen=True)
class Pooled:
    """One pooling rule's battery inputs at every layer: control texts, EmoBank sentences, hard negatives and
    the naming phrases' word directions ``[C, n_layers, H]``."""

    control: torch.Tensor
    arousal: torch.Tensor
    negatives: torch.Tensor
    words: torch.Tensor


FigureHook = Callable[[dict[int, torch.Tensor], Sequence[int], Pooled], dict[str, Any]]
HOOKS: list[FigureHook] = []


@dataclass
class Battery:
    concepts: tuple[str, ...]
    control: tuple[ControlText, ...]
    corpus: ArousalSentences
    negative_data: LabelledTexts
    pooled: dict[str, Pooled]

    @classmethod
    def empty(cls, concepts: Sequence[str], quick: bool) -> Battery:
        return cls(tuple(concepts), control_texts(concepts), arousal_sentences(100 if quick else None),
                   hard_negative_data(concepts), {})

    def prepare(self, loaded: LoadedModel, label: str, spec: PoolingSpec, cache: ActivationCache | None) -> Pooled:
        """Pool this rule's inputs at every layer (once per label)."""
        if label not in self.pooled:
            layers = list(range(loaded.n_layers))
            texts = [item.text for item in self.control] + list(self.corpus.texts) + list(self.negative_data.texts) \
                + list(naming_texts(self.concepts))
            rows = pool_texts(loaded, texts, layers, spec, cache=cache, progress=sys.stderr.isatty())
            control, arousal, negatives, naming = torch.split(rows, [len(self.control), len(self.corpus.texts),
                                                                     len(self.negative_data.texts),
                                                                     len(rows) - len(self.control)
                                                                     - len(self.corpus.texts)
                                                                     - len(self.negative_data.texts)])
            self.pooled[label] = Pooled(control, arousal, negatives, word_directions(naming, len(self.concepts)))
        return self.pooled[label]

    def lexical_fit(self, method: str | DirectionMethod, rule: str, label: str, layers: Sequence[int],
                    neutral_pcs: int) -> Fit:
        """A fit of ``method`` with the lexical ``rule`` (``training.lexical.lexical_fit``) on pooling ``label``."""
        pooled, layers = self.pooled[label], list(layers)
        return lexical_fit(method, rule, pooled.negatives[:, layers], pooled.words[:, layers], layers,
                           neutral_pcs=neutral_pcs)

    def control_result(self, cv: CrossValidation, data: LabelledTexts) -> LexicalControl:
        assert cv.extra_z is not None, "cross-validate with extra=the control rows"
        return lexical_control(cv.scores, data, cv.extra_z.mean(dim=1), self.control)

    def figures(self, cv: CrossValidation, data: LabelledTexts, vectors: dict[int, torch.Tensor],
                layers: Sequence[int], label: str, n_boot: int,
                seed: int) -> tuple[dict[str, Any], LexicalControl, ArousalCheck]:
        """The battery's fields of a row, and its lexical control and arousal check (for the paired table)."""
        pooled, layers = self.pooled[label], list(layers)
        control = self.control_result(cv, data)
        fpr = fpr_interval(control, n_boot, seed)
        arousal = arousal_check(vectors, data.concepts, layers, pooled.arousal[:, layers], self.corpus,
                                n_boot=n_boot, seed=seed)
        row: dict[str, Any] = {
            "lexical_fpr": fpr.estimate, "lexical_fpr_ci": [fpr.low, fpr.high],
            "lexical_negative_rate": control.negative_rate,
            "per_concept_fpr": {entry.concept: entry.false_positive_rate for entry in control.per_concept},
            "arousal_rho": arousal.rho.estimate, "arousal_rho_ci": [arousal.rho.low, arousal.rho.high],
            "emobank_valence_rho": arousal.valence_rho, **{f"{k}_r": v for k, v in arousal.pc_r.items()}}
        for hook in HOOKS:
            row.update(hook(vectors, layers, pooled))
        return row, control, arousal

    def mix(self, label: str, mean_label: str, last_label: str, weight: float) -> Pooled:
        """``mean_last`` at last-token weight ``weight``: every input (and the word directions, linear in them)
        mixed from the two rules' rows."""
        mean, last = self.pooled[mean_label], self.pooled[last_label]
        self.pooled[label] = Pooled(*((1 - weight) * a + weight * b for a, b in
                                      ((mean.control, last.control), (mean.arousal, last.arousal),
                                       (mean.negatives, last.negatives), (mean.words, last.words))))
        return self.pooled[label]
