"""Negation: does the named concept's readout drop when the text is negated or the scene undone?

``data/negation_pairs.jsonl`` holds minimal pairs ``{"concept", "text", "negated"}``: "I feel sad about it." /
"I don't feel sad about it.", or a scene / the same scene undone. Both sides are pooled as the artifact was
trained and read out (mean z over the layers); a pair *drops* when the concept's readout of ``negated`` is below
that of ``text``. Reported: the share of pairs that drop, per concept and overall (with a bootstrap 95% CI over
the pairs), and the mean drop.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from amygdala.artifact import ReadoutArtifact
from amygdala.evaluation.checks.bundled import Row, read_rows, string_field
from amygdala.evaluation.checks.options import CheckOptions
from amygdala.evaluation.checks.scoring import fmt_interval, interval_json, mean_interval, share_interval, text_scores
from amygdala.evaluation.metrics import Interval
from amygdala.forward.models import LoadedModel

PAIRS_FILE = "negation_pairs.jsonl"


@dataclass(frozen=True)
class NegatedPair:
    concept: str
    text: str
    negated: str
    score: float
    negated_score: float

    @property
    def drop(self) -> float:
        return self.score - self.negated_score


@dataclass(frozen=True)
class ConceptNegation:
    concept: str
    drop_share: float
    mean_drop: float
    n_pairs: int


@dataclass(frozen=True)
class Negation:
    pairs: tuple[NegatedPair, ...]
    per_concept: tuple[ConceptNegation, ...]
    drop_share: Interval
    mean_drop: Interval
    skipped: tuple[str, ...]
    note: str | None = None
    name: str = "negation"

    def to_json(self) -> dict[str, Any]:
        return {"n_pairs": len(self.pairs), "drop_share": interval_json(self.drop_share),
                "mean_drop": interval_json(self.mean_drop), "skipped": list(self.skipped), "note": self.note,
                "per_concept": [asdict(c) for c in self.per_concept],
                "pairs": [{**asdict(pair), "drop": pair.drop} for pair in self.pairs]}

    def line(self) -> str:
        return (f"named concept drops in {fmt_interval(self.drop_share)} of {len(self.pairs)} pairs; mean drop "
                f"{fmt_interval(self.mean_drop)} (z)")


def _problems(row: Row) -> list[str]:
    problems = string_field(row, "concept") + string_field(row, "text") + string_field(row, "negated")
    if not problems and row["text"].strip() == row["negated"].strip():
        problems.append("'negated' is the same as 'text': write the negated or undone version")
    return problems


def negation_pairs() -> list[Row]:
    return read_rows(PAIRS_FILE, None, "negation pairs", _problems)


def negation(loaded: LoadedModel, artifact: ReadoutArtifact, options: CheckOptions) -> Negation:
    """Every bundled pair whose concept the artifact has, scored (see the module doc)."""
    rows = [row for row in negation_pairs() if row["concept"] in artifact.concepts]
    texts = list(dict.fromkeys(t for row in rows for t in (row["text"], row["negated"])))
    scores, index = text_scores(loaded, artifact, texts, options), {t: i for i, t in enumerate(texts)}
    pairs = []
    for row in rows:
        c = artifact.concepts.index(row["concept"])
        pairs.append(NegatedPair(row["concept"], row["text"], row["negated"], float(scores[index[row["text"]], c]),
                                 float(scores[index[row["negated"]], c])))
    per_concept = []
    for concept in artifact.concepts:
        drops = [pair.drop for pair in pairs if pair.concept == concept]
        if drops:
            per_concept.append(ConceptNegation(concept, sum(d > 0 for d in drops) / len(drops),
                                               sum(drops) / len(drops), len(drops)))
    covered = {c.concept for c in per_concept}
    return Negation(tuple(pairs), tuple(per_concept),
                    share_interval([pair.drop > 0 for pair in pairs], options.n_boot, options.seed),
                    mean_interval([pair.drop for pair in pairs], options.n_boot, options.seed),
                    tuple(c for c in artifact.concepts if c not in covered),
                    None if pairs else "no bundled pair names a concept of the artifact")
