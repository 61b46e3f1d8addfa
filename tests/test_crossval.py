"""``cross_validate``: every node scored once by vectors that never saw it (real Gemma activations), the
out-of-fold z-scores against a by-hand refit, bootstrap intervals that contain the estimate and narrow with n,
and paired differences over the same draws (zero for identical variants, above zero for a planted gain)."""

from __future__ import annotations

import pytest
import torch
from sklearn.metrics import roc_auc_score

from amygdala.evaluation.crossval import CrossValidationError, cross_validate, paired_cv
from amygdala.evaluation.metrics import PairingError
from amygdala.forward.models import LoadedModel
from amygdala.forward.pooled import pool_texts
from amygdala.forward.pooling import PoolingSpec
from amygdala.training.directions import fit_directions
from amygdala.training.splits import LabelledTexts, key_folds, labelled_texts

from eval_helpers import POSITIVES, examples

LAYERS = (4, 9)


def _two_texts_per_node(data: LabelledTexts) -> tuple[str, ...]:
    """Node keys that put consecutive texts in one node, so folds must keep pairs together."""
    return tuple(f"node-{row // 2}" for row in range(len(data.texts)))


@pytest.mark.slow
def test_cross_validate_scores_every_node_once_with_vectors_that_never_saw_it(gemma: LoadedModel) -> None:
    data = labelled_texts(examples(), sorted(POSITIVES), None)
    keys = _two_texts_per_node(data)
    pooled = pool_texts(gemma, data.texts, LAYERS, PoolingSpec("mean", 1))
    fitted_on: list[set[str]] = []

    def recording_fit(part_pooled: torch.Tensor, part: LabelledTexts) -> dict[int, torch.Tensor]:
        fitted_on.append({keys[data.texts.index(text)] for text in part.texts})
        return fit_directions(part_pooled, part, LAYERS, "lda_diagonal")

    result = cross_validate(pooled, data, keys, LAYERS, folds=4, seed=3, fit=recording_fit, n_boot=200)
    assert len(result.fold) == len(data.texts) and sorted(set(result.fold)) == [0, 1, 2, 3]
    for fold, fitted in enumerate(fitted_on):
        scored = {keys[row] for row in range(len(keys)) if result.fold[row] == fold}
        assert scored and not scored & fitted, "a node sits on both sides of a fold"
        assert scored | fitted == set(keys)
    for key in set(keys):
        assert len({result.fold[row] for row in range(len(keys)) if keys[row] == key}) == 1
    # independent reference for fold 0: refit by hand, z-score with the fitting texts' projections
    rows = key_folds(keys, 4, 3)[0]
    rest = [row for row in range(len(keys)) if row not in rows]
    vectors = fit_directions(pooled[rest], data.subset(rest), LAYERS, "lda_diagonal")
    for position, layer in enumerate(LAYERS):
        fit_raw, held_raw = pooled[rest, position] @ vectors[layer].T, pooled[rows, position] @ vectors[layer].T
        expected = (held_raw - fit_raw.mean(dim=0)) / fit_raw.std(dim=0, correction=0)
        assert torch.allclose(result.z[rows, position], expected, atol=1e-4)
    scores = result.scores
    for c, concept in enumerate(result.per_concept):
        labelled = data.positive[:, c] | data.negative[:, c]
        expected_auroc = roc_auc_score(data.positive[labelled, c].numpy(), scores[labelled, c].numpy())
        assert concept.auroc.estimate == pytest.approx(expected_auroc)
        assert concept.auroc.low <= concept.auroc.estimate <= concept.auroc.high
    assert result.mean_auroc.estimate > result.random_mean_auroc.estimate



@pytest.mark.slow
def test_paired_cv_on_real_gemma_scores_is_the_difference_of_the_two_figures(gemma: LoadedModel) -> None:
    data = labelled_texts(examples(), sorted(POSITIVES), None)
    keys = _two_texts_per_node(data)
    results = [cross_validate(pool_texts(gemma, data.texts, LAYERS, spec), data, keys, LAYERS, folds=4, seed=3,
                              n_boot=200) for spec in (PoolingSpec(), PoolingSpec("mean", 1))]
    paired = paired_cv(*results)
    for name in ("mean_auroc", "top1", "top3"):
        difference = getattr(paired, name).difference
        assert difference.estimate == pytest.approx(getattr(results[0], name).estimate
                                                    - getattr(results[1], name).estimate)
        assert difference.low <= difference.estimate <= difference.high
    same = paired_cv(results[0], results[0]).mean_auroc.difference
    assert (same.estimate, same.low, same.high) == (0, 0, 0)

def _planted(n_nodes: int, seed: int, strength: float = 0.4) -> tuple[torch.Tensor, LabelledTexts, tuple[str, ...]]:
    """Three concepts, one text per node, a weak planted direction per concept in 16 dimensions (2 layers)."""
    generator = torch.Generator().manual_seed(seed)
    label = torch.arange(n_nodes) % 3
    positive = torch.nn.functional.one_hot(label, 3).bool()
    directions = torch.randn((3, 16), generator=generator)
    pooled = torch.randn((n_nodes, 2, 16), generator=generator) + strength * directions[label][:, None]
    keys = tuple(f"k{i}" for i in range(n_nodes))
    return pooled, LabelledTexts(("a", "b", "c"), keys, keys, positive, ~positive), keys


def test_cross_validation_intervals_contain_the_estimate_and_narrow_with_n() -> None:
    widths = []
    for n_nodes in (60, 600):
        pooled, data, keys = _planted(n_nodes, seed=1)
        result = cross_validate(pooled, data, keys, (0, 1), folds=5, seed=0, n_boot=300)
        for interval in (result.mean_auroc, result.top1, result.top3, result.random_mean_auroc,
                         *(c.auroc for c in result.per_concept)):
            assert interval.low <= interval.estimate <= interval.high
        widths.append(result.mean_auroc.high - result.mean_auroc.low)
    assert widths[1] < widths[0] / 2, widths  # ~1/sqrt(10) expected


def test_cross_validate_rejects_too_few_folds_or_nodes_in_one_message() -> None:
    pooled, data, keys = _planted(6, seed=0)
    with pytest.raises(CrossValidationError, match="folds 1 must be >= 2"):
        cross_validate(pooled, data, keys, (0, 1), folds=1, seed=0)
    with pytest.raises(CrossValidationError, match="folds 7 is more than the 6 node"):
        cross_validate(pooled, data, keys, (0, 1), folds=7, seed=0)
    with pytest.raises(CrossValidationError, match="must be \\[texts, 3 layers, hidden\\]"):
        cross_validate(pooled, data, keys, (0, 1, 2), folds=2, seed=0)


def test_paired_cv_is_exactly_zero_for_identical_variants_and_above_zero_for_a_planted_gain() -> None:
    pooled, data, keys = _planted(150, seed=2)
    stronger, _, _ = _planted(150, seed=2, strength=0.8)  # same noise, twice the planted signal
    weak = cross_validate(pooled, data, keys, (0, 1), folds=5, seed=0, n_boot=200)
    same = paired_cv(weak, cross_validate(pooled, data, keys, (0, 1), folds=5, seed=0, n_boot=200))
    for difference in (same.mean_auroc, same.top1, same.top3):
        assert (difference.difference.estimate, difference.difference.low, difference.difference.high) == (0, 0, 0)
        assert difference.sign == 0
    gain = paired_cv(cross_validate(stronger, data, keys, (0, 1), folds=5, seed=0, n_boot=200), weak)
    for difference in (gain.mean_auroc, gain.top1):
        assert difference.difference.estimate == pytest.approx(difference.a - difference.b)
        assert 0 < difference.difference.low <= difference.difference.estimate <= difference.difference.high
        assert difference.sign == 1
    # the same draws make the paired CI narrower than the two figures' own CIs
    assert gain.mean_auroc.difference.high - gain.mean_auroc.difference.low < weak.mean_auroc.high - weak.mean_auroc.low
    with pytest.raises(PairingError, match="seed 0 vs 1"):
        paired_cv(weak, cross_validate(pooled, data, keys, (0, 1), folds=5, seed=1, n_boot=200))
