"""Negation on Gemma: pairs scored on a direction planted from their own activations drop."""

from __future__ import annotations

from collections import Counter

from amygdala.evaluation.checks import CheckOptions
from amygdala.evaluation.checks.negation import negation, negation_pairs
from amygdala.forward.models import LoadedModel
from checks_helpers import SPEC, planted, pooled
from test_checks_sweeps import SAMPLE


def test_negation_pairs_bundled_cover_each_sample_concept() -> None:
    counts = Counter(row["concept"] for row in negation_pairs())
    assert set(counts) == set(SAMPLE) and min(counts.values()) >= 4


def test_negation_drops_on_a_direction_planted_from_the_pairs(gemma: LoadedModel) -> None:
    """The vector is the mean of (text - negated) over the sad pairs: every pair's drop is its difference
    projected on that mean, so most pairs drop, and the figures are the pairs' own."""
    rows = [row for row in negation_pairs() if row["concept"] == "sad"]
    difference = pooled(gemma, [r["text"] for r in rows]) - pooled(gemma, [r["negated"] for r in rows])
    artifact = planted(("sad", "unknown-concept"), [difference.mean(dim=0), -difference.mean(dim=0)],
                       gemma.hidden_size)
    result = negation(gemma, artifact, CheckOptions(("negation",), spec=SPEC, n_boot=50))
    assert len(result.pairs) == len(rows) and result.skipped == ("unknown-concept",)
    assert result.drop_share.estimate >= 0.75 and result.mean_drop.estimate > 0
    assert result.per_concept[0].n_pairs == len(rows)
    assert result.drop_share.estimate == sum(p.drop > 0 for p in result.pairs) / len(rows)
