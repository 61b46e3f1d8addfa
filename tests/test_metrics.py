"""The evaluation figures against independent references: sklearn/numpy formulas and planted structure."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from amygdala.evaluation.metrics import auroc, cohens_d, explained_by_others, filtered_ranks, phi_matrix
from amygdala.training.splits import LabelledTexts


def _labelled(positive: list[list[bool]], negative: list[list[bool]] | None = None) -> LabelledTexts:
    pos = torch.tensor(positive)
    neg = ~pos if negative is None else torch.tensor(negative)
    return LabelledTexts(tuple(f"c{c}" for c in range(pos.shape[1])), tuple(f"t{i}" for i in range(len(pos))),
                         tuple(f"k{i}" for i in range(len(pos))), pos, neg)



def test_auroc_is_one_on_planted_separation_and_half_on_noise() -> None:
    rng = np.random.default_rng(0)
    assert auroc(rng.random(50) + 1.0, rng.random(80)) == 1.0
    assert auroc(rng.normal(size=4000), rng.normal(size=4000)) == pytest.approx(0.5, abs=0.03)
    assert math.isnan(auroc(np.array([1.0]), np.array([])))


def test_cohens_d_matches_the_pooled_std_formula() -> None:
    # means 4 and 2, sample variances 4 and 1, pooled variance (2*4 + 2*1) / 4 = 2.5
    assert cohens_d(np.array([2.0, 4.0, 6.0]), np.array([1.0, 2.0, 3.0])) == pytest.approx(2 / math.sqrt(2.5))
    assert math.isnan(cohens_d(np.array([1.0]), np.array([1.0])))


def test_explained_by_others_flags_a_vector_built_from_two_others() -> None:
    generator = torch.Generator().manual_seed(1)
    base = torch.randn((4, 256), generator=generator)
    combined = 0.6 * base[0] / base[0].norm() + 0.8 * base[1] / base[1].norm()
    vectors = torch.cat([base, combined[None]])
    vectors = vectors / vectors.norm(dim=1, keepdim=True)
    r2 = explained_by_others(vectors, alpha=0.01)
    assert [value >= 0.9 for value in r2] == [True, True, False, False, True]  # a and b are in span(e, the other)
    assert max(r2[2], r2[3]) < 0.2


def test_phi_matrix_equals_pearson_correlation_of_labels() -> None:
    labels = torch.tensor(np.random.default_rng(2).random((40, 4)) > 0.6)
    expected = np.corrcoef(labels.numpy().astype(float), rowvar=False)
    assert np.allclose(phi_matrix(labels).numpy(), expected)


def test_filtered_ranks_ignore_the_texts_other_positive_concepts() -> None:
    data = _labelled([[True, True, False], [False, True, False]])
    z = torch.tensor([[1.0, 5.0, 2.0], [0.0, 1.0, 3.0]])
    truths, ranks, picks = filtered_ranks(z, data)
    # text 0: concept 0 loses only to concept 2 (concept 1 is also its label); concept 1 wins outright
    assert (truths, ranks, picks) == ([0, 1, 1], [2, 1, 2], [2, 1, 2])


def test_weighted_auroc_equals_roc_auc_score_on_the_repeated_texts() -> None:
    from sklearn.metrics import roc_auc_score

    from amygdala.evaluation.metrics import bootstrap_weights, weighted_auroc

    rng = np.random.default_rng(3)
    scores = torch.tensor(rng.integers(0, 6, size=30).astype(float))  # ties on purpose
    positive = torch.tensor(rng.random(30) < 0.4)
    negative = ~positive
    keys = [f"node-{i // 3}" for i in range(30)]
    weights = bootstrap_weights(keys, 20, seed=0)
    assert torch.equal(weights[:, 0], weights[:, 2]), "a node's texts are drawn together"
    assert torch.allclose(weights.sum(dim=1), torch.full((20,), 30.0, dtype=torch.float64))
    replicates = weighted_auroc(scores, positive, negative, weights)
    for weight, replicate in zip(weights, replicates):
        repeat = weight.long()
        labels, values = positive.repeat_interleave(repeat), scores.repeat_interleave(repeat)
        if labels.all() or not labels.any():
            assert math.isnan(replicate)
        else:
            assert float(replicate) == pytest.approx(roc_auc_score(labels.numpy(), values.numpy()))
