"""Intensity sweeps: does a concept's readout rise (or fall) as a number in the text grows?

``data/sweep_templates.jsonl`` holds templates with a numeric slot ``{x}`` and the concepts expected to move
with it: ``{"id": "tylenol", "template": "I just took {x} mg of Tylenol.", "values": [200, 500, ...],
"rises": ["anxious"], "falls": ["calm"]}``. Each value fills the slot; each text is pooled as the artifact was
trained and read out (mean z over the layers, ``scoring.text_scores``).

- a **case** is one (template, concept it names that the artifact has): Spearman's rho of the slot values
  against the concept's readout, with a bootstrap 95% CI over the values; *signed* rho is rho for ``rises`` and
  -rho for ``falls``, so > 0 is the expected direction;
- a **template** moves in the expected direction when the mean signed rho of its cases is > 0;
- reported: the share of templates and of cases in the expected direction and the mean signed rho, each with a
  bootstrap 95% CI over templates / cases.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from amygdala.artifact import ReadoutArtifact
from amygdala.evaluation.checks.bundled import Row, read_rows, string_field
from amygdala.evaluation.checks.options import CheckOptions
from amygdala.evaluation.checks.scoring import (
    fmt_interval,
    interval_json,
    mean_interval,
    share_interval,
    spearman_rows,
    text_scores,
)
from amygdala.evaluation.metrics import Interval, percentile_interval, spearman
from amygdala.forward.models import LoadedModel

TEMPLATES_FILE = "sweep_templates.jsonl"
SLOT = "{x}"


@dataclass(frozen=True)
class SweepTemplate:
    id: str
    template: str
    values: tuple[float, ...]
    rises: tuple[str, ...]
    falls: tuple[str, ...]

    def texts(self) -> list[str]:
        return [self.template.replace(SLOT, f"{value:g}") for value in self.values]


@dataclass(frozen=True)
class SweepCase:
    """One template and one concept: readouts along the values, and rho with its CI (``direction`` +1 rises)."""

    template: str
    concept: str
    direction: int
    values: tuple[float, ...]
    scores: tuple[float, ...]
    rho: Interval

    @property
    def signed_rho(self) -> float:
        return self.direction * self.rho.estimate


@dataclass(frozen=True)
class Sweeps:
    cases: tuple[SweepCase, ...]
    template_share: Interval
    case_share: Interval
    mean_signed_rho: Interval
    n_templates: int
    skipped: tuple[str, ...]
    note: str | None = None
    name: str = "sweeps"

    def to_json(self) -> dict[str, Any]:
        return {"n_templates": self.n_templates, "n_cases": len(self.cases),
                "template_share_expected": interval_json(self.template_share),
                "case_share_expected": interval_json(self.case_share),
                "mean_signed_rho": interval_json(self.mean_signed_rho), "skipped": list(self.skipped),
                "note": self.note, "cases": [{**asdict(case), "rho": interval_json(case.rho),
                                              "signed_rho": case.signed_rho} for case in self.cases]}

    def line(self) -> str:
        return (f"templates in the expected direction {fmt_interval(self.template_share)} of {self.n_templates}; "
                f"cases {fmt_interval(self.case_share)} of {len(self.cases)}; mean signed rho "
                f"{fmt_interval(self.mean_signed_rho)}")


def _problems(row: Row) -> list[str]:
    problems = string_field(row, "id") + string_field(row, "template")
    if isinstance(row.get("template"), str) and SLOT not in row["template"]:
        problems.append(f"template {row['template'][:50]!r} has no slot: write {SLOT} where the number goes")
    values = row.get("values")
    if not (isinstance(values, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                             and math.isfinite(v) for v in values) and len(set(values)) >= 3):
        problems.append("'values' must list at least 3 distinct numbers for the slot")
    moves = [row.get("rises", []), row.get("falls", [])]
    if not all(isinstance(m, list) and all(isinstance(c, str) for c in m) for m in moves) or not any(moves):
        problems.append("name the concepts expected to move: 'rises' and/or 'falls', lists of concept names")
    return problems


def sweep_templates(options: CheckOptions) -> list[SweepTemplate]:
    """The bundled templates, then ``options.sweep_templates``' (every bad line named at once)."""
    rows = read_rows(TEMPLATES_FILE, options.sweep_templates, "sweep templates", _problems)
    return [SweepTemplate(row["id"], row["template"], tuple(float(v) for v in row["values"]),
                          tuple(row.get("rises", [])), tuple(row.get("falls", []))) for row in rows]


def _rho_interval(values: tuple[float, ...], scores: list[float], n_boot: int, seed: int) -> Interval:
    draws = torch.randint(len(values), (n_boot, len(values)), generator=torch.Generator().manual_seed(seed)).numpy()
    replicates = spearman_rows(np.asarray(values)[draws], np.asarray(scores)[draws])
    return percentile_interval(spearman(values, scores), torch.from_numpy(replicates))


def sweeps(loaded: LoadedModel, artifact: ReadoutArtifact, options: CheckOptions) -> Sweeps:
    """Every template with at least one concept the artifact has, swept and scored (see the module doc)."""
    templates = sweep_templates(options)
    named = {c for t in templates for c in (*t.rises, *t.falls)}
    used = [t for t in templates if any(c in artifact.concepts for c in (*t.rises, *t.falls))]
    texts = [text for t in used for text in t.texts()]
    scores = text_scores(loaded, artifact, list(dict.fromkeys(texts)), options)
    row = {text: index for index, text in enumerate(dict.fromkeys(texts))}
    cases, per_template = [], []
    for t in used:
        moved = [(c, 1) for c in t.rises if c in artifact.concepts] + [(c, -1) for c in t.falls
                                                                       if c in artifact.concepts]
        mine = []
        for concept, direction in moved:
            column = [float(scores[row[text], artifact.concepts.index(concept)]) for text in t.texts()]
            mine.append(SweepCase(t.id, concept, direction, t.values, tuple(column),
                                  _rho_interval(t.values, column, options.n_boot, options.seed)))
        cases += mine
        signed = [case.signed_rho for case in mine if not math.isnan(case.signed_rho)]
        per_template.append(sum(signed) / len(signed) > 0 if signed else False)
    skipped = tuple(c for c in artifact.concepts if c not in named)
    return Sweeps(tuple(cases), share_interval(per_template, options.n_boot, options.seed),
                  share_interval([case.signed_rho > 0 for case in cases], options.n_boot, options.seed),
                  mean_interval([case.signed_rho for case in cases], options.n_boot, options.seed), len(used),
                  skipped, None if used else "no template names a concept of the artifact")
