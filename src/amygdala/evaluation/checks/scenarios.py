"""Implicit scenarios: short texts that evoke an emotion without naming it; is it the top-ranked concept?

``data/implicit_scenarios.jsonl`` holds ``{"concept", "text"}`` rows, at least 8 per concept of the bundled
sample; no text names its concept (the extract mention rule, ``extraction.emotions.count_mentions``: any word
form, whole words; a user's file is held to the same rule). Each text is pooled as the artifact was trained and
read out (mean z over the layers); its concepts are ranked by readout.

Reported: top-1 and top-3 (the share of scenarios whose concept ranks first / in the first three), each with a
bootstrap 95% CI over the scenarios, the confusion matrix (true concept x top-ranked concept; its counts add up
to the number of scenarios scored) and per-concept top-1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from amygdala.artifact import ReadoutArtifact
from amygdala.evaluation.checks.bundled import Row, read_rows, string_field
from amygdala.evaluation.checks.options import CheckOptions
from amygdala.evaluation.checks.scoring import fmt_interval, interval_json, share_interval, text_scores
from amygdala.evaluation.metrics import Interval
from amygdala.extraction.emotions import count_mentions
from amygdala.forward.models import LoadedModel

SCENARIOS_FILE = "implicit_scenarios.jsonl"


@dataclass(frozen=True)
class Scenario:
    concept: str
    text: str


@dataclass(frozen=True)
class Scenarios:
    concepts: tuple[str, ...]
    scenarios: tuple[Scenario, ...]
    ranks: tuple[int, ...]
    top1: Interval
    top3: Interval
    confusion: tuple[tuple[int, ...], ...]
    skipped: tuple[str, ...]
    note: str | None = None
    name: str = "scenarios"

    def per_concept_top1(self) -> dict[str, float]:
        result = {}
        for concept in self.concepts:
            ranks = [r for s, r in zip(self.scenarios, self.ranks) if s.concept == concept]
            if ranks:
                result[concept] = sum(r == 1 for r in ranks) / len(ranks)
        return result

    def to_json(self) -> dict[str, Any]:
        return {"n_scenarios": len(self.scenarios), "top1": interval_json(self.top1),
                "top3": interval_json(self.top3), "chance_top1": 1 / len(self.concepts) if self.concepts else None,
                "concepts": list(self.concepts), "confusion": [list(row) for row in self.confusion],
                "per_concept_top1": self.per_concept_top1(), "skipped": list(self.skipped), "note": self.note,
                "scenarios": [{"concept": s.concept, "text": s.text, "rank": r}
                              for s, r in zip(self.scenarios, self.ranks)]}

    def line(self) -> str:
        chance = f" (chance {1 / len(self.concepts):.3f})" if self.concepts else ""
        return (f"top-1 {fmt_interval(self.top1)}{chance}, top-3 {fmt_interval(self.top3)} over "
                f"{len(self.scenarios)} scenarios")


def _problems(row: Row) -> list[str]:
    problems = string_field(row, "concept") + string_field(row, "text")
    if not problems and count_mentions(row["text"], row["concept"]):
        problems.append(f"the text names {row['concept']!r} (a scenario must evoke it without a word form of "
                        "it): rewrite it without the word")
    return problems


def implicit_scenarios(options: CheckOptions) -> list[Scenario]:
    """The bundled scenarios, then ``options.scenarios``' (every bad line named at once)."""
    return [Scenario(row["concept"], row["text"])
            for row in read_rows(SCENARIOS_FILE, options.scenarios, "scenarios", _problems)]


def rank_scenarios(scores: Any, truths: list[int]) -> list[int]:
    """1-based rank of each row's true concept among its readouts ``[n, n_concepts]`` (ties rank it lower)."""
    return [int((scores[i] >= scores[i, truth]).sum()) for i, truth in enumerate(truths)]


def scenarios(loaded: LoadedModel, artifact: ReadoutArtifact, options: CheckOptions) -> Scenarios:
    """Every scenario whose concept the artifact has, ranked among the artifact's concepts."""
    kept = [s for s in implicit_scenarios(options) if s.concept in artifact.concepts]
    scores = text_scores(loaded, artifact, [s.text for s in kept], options)
    truths = [artifact.concepts.index(s.concept) for s in kept]
    ranks = rank_scenarios(scores, truths)
    n = len(artifact.concepts)
    confusion = [[0] * n for _ in range(n)]
    for i, truth in enumerate(truths):
        confusion[truth][int(scores[i].argmax())] += 1
    covered = {s.concept for s in kept}
    return Scenarios(artifact.concepts, tuple(kept), tuple(ranks),
                     share_interval([r == 1 for r in ranks], options.n_boot, options.seed),
                     share_interval([r <= 3 for r in ranks], options.n_boot, options.seed),
                     tuple(tuple(row) for row in confusion), tuple(c for c in artifact.concepts if c not in covered),
                     None if kept else "no scenario evokes a concept of the artifact")
