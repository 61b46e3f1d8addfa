"""Direction methods recover directions planted in synthetic activations; sums merge; calibration is exact."""

from __future__ import annotations

from typing import get_args

import numpy as np
import pytest
import torch

from amygdala.training.directions import (
    DIRECTION_METHODS,
    LDA_SHRINKAGE,
    MethodName,
    chosen_shrinkage,
    compute_directions,
    fit_directions,
)
from amygdala.training.splits import LabelledTexts
from amygdala.training.statistics import ConceptStats, DirectionError, StatsAccumulator, calibrate

HIDDEN, LAYERS = 32, (2, 5)


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1)


def _planted(n_concepts: int = 6, per_side: int = 400, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Texts of concept c (first ``per_side`` per concept) carry ``offset + 3·d_c`` over isotropic noise;
    the following ``per_side`` are its negatives (noise only). Layer 5 is layer 2 scaled by 2."""
    generator = torch.Generator().manual_seed(seed)
    planted = torch.linalg.qr(torch.randn(HIDDEN, n_concepts + 1, generator=generator))[0].T
    offset, directions = 2.0 * planted[0], planted[1:]
    rows, positive, negative = [], [], []
    for concept in range(n_concepts):
        for polarity in (1, 0):
            noise = torch.randn(per_side, HIDDEN, generator=generator)
            rows.append(noise + polarity * (offset + 3.0 * directions[concept]))
            labels = torch.zeros(per_side, n_concepts, dtype=torch.bool)
            labels[:, concept] = True
            (positive if polarity else negative).append(labels)
            (negative if polarity else positive).append(torch.zeros_like(labels))
    x = torch.cat(rows)
    pooled = torch.stack([x, 2 * x], dim=1)
    return pooled, torch.cat(positive), torch.cat(negative), directions, offset


def _stats(pooled: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> ConceptStats:
    concepts = [f"c{index}" for index in range(positive.shape[1])]
    return ConceptStats.from_pooled(pooled, positive, negative, concepts, LAYERS)


def test_direction_methods_mapping_matches_the_method_names() -> None:
    assert tuple(DIRECTION_METHODS) == get_args(MethodName)


@pytest.mark.parametrize(("method", "min_cosine"), [("diff_of_means", 0.98), ("lda", 0.95)])
def test_contrastive_methods_recover_a_planted_direction(method: str, min_cosine: float) -> None:
    """Positives minus negatives carries offset + 3·d_c over isotropic noise. LDA whitens with the covariance
    of all texts, which includes the offset every concept shares, so it tilts slightly away from it."""
    pooled, positive, negative, directions, offset = _planted()
    vectors = compute_directions(_stats(pooled, positive, negative), method)
    expected = offset + 3.0 * directions
    for layer in LAYERS:
        assert vectors[layer].dtype == torch.float32
        torch.testing.assert_close(vectors[layer].norm(dim=1), torch.ones(6))
        assert _cosine(vectors[layer], expected).min() > min_cosine


def test_mean_centered_removes_what_all_concepts_share() -> None:
    pooled, positive, negative, directions, offset = _planted()
    vectors = compute_directions(_stats(pooled, positive, negative), "mean_centered")
    expected = directions - directions.mean(dim=0, keepdim=True)
    assert _cosine(vectors[2], expected).min() > 0.98
    assert _cosine(vectors[2], offset.expand_as(vectors[2])).abs().max() < 0.1


def test_lda_equals_an_independent_numpy_reference_and_beats_diff_of_means_under_correlated_noise() -> None:
    """Noise with a large variance along u hides the discriminant w = (e0 + u)/√2 from the mean difference."""
    rng = np.random.default_rng(0)
    u = np.eye(HIDDEN)[1]
    w = (np.eye(HIDDEN)[0] + u) / np.sqrt(2)
    sigma = np.eye(HIDDEN) + 100 * np.outer(u, u)
    shift = sigma @ w * 0.5
    neg = rng.multivariate_normal(np.zeros(HIDDEN), sigma, size=3000)
    pos = rng.multivariate_normal(shift, sigma, size=3000)
    x = torch.tensor(np.concatenate([pos, neg]), dtype=torch.float32)
    labels = torch.tensor([[True]] * 3000 + [[False]] * 3000)
    stats = ConceptStats.from_pooled(x.unsqueeze(1), labels, ~labels, ["c"], [0])
    data = x.double().numpy()
    covariance = np.cov(data, rowvar=False, bias=True)
    ridge = covariance + LDA_SHRINKAGE * np.trace(covariance) / HIDDEN * np.eye(HIDDEN)
    reference = np.linalg.solve(ridge, data[:3000].mean(0) - data[3000:].mean(0))
    lda_vector = compute_directions(stats, "lda")[0][0]
    assert _cosine(lda_vector, torch.tensor(reference)) > 0.99999
    dom_vector = compute_directions(stats, "diff_of_means")[0][0]
    assert _cosine(lda_vector, torch.tensor(w)) > _cosine(dom_vector, torch.tensor(w)) + 0.15


def test_concept_stats_merge_equals_stats_of_the_concatenation() -> None:
    pooled, positive, negative, _, _ = _planted(per_side=50)
    whole = _stats(pooled, positive, negative)
    merged = _stats(pooled[:300], positive[:300], negative[:300]).merge(
        _stats(pooled[300:], positive[300:], negative[300:]))
    for name in ("positive_sum", "negative_sum", "total_sum", "second_moment"):
        torch.testing.assert_close(getattr(merged, name), getattr(whole, name))
    assert torch.equal(merged.positive_count, whole.positive_count) and merged.n_texts == whole.n_texts


def test_stats_accumulator_is_bit_identical_to_merging_the_same_batches() -> None:
    pooled, positive, negative, _, _ = _planted(per_side=20)
    accumulator = StatsAccumulator([f"c{index}" for index in range(6)], LAYERS, HIDDEN)
    merged = None
    for start in range(0, pooled.shape[0], 32):
        part = slice(start, start + 32)
        accumulator.add(pooled[part], positive[part], negative[part])
        stats = _stats(pooled[part], positive[part], negative[part])
        merged = stats if merged is None else merged.merge(stats)
    frozen = accumulator.freeze()
    assert torch.equal(frozen.second_moment, merged.second_moment)
    assert torch.equal(frozen.positive_sum, merged.positive_sum)


def test_calibrate_equals_the_projections_of_the_training_texts() -> None:
    pooled, positive, negative, _, _ = _planted(per_side=50)
    stats = _stats(pooled, positive, negative)
    vectors = compute_directions(stats)
    calibration = calibrate(stats, vectors)
    for position, layer in enumerate(LAYERS):
        projections = pooled[:, position].double() @ vectors[layer].double().T
        torch.testing.assert_close(calibration.mean[layer], projections.mean(0).float(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(calibration.std[layer], projections.std(0, correction=0).float(), rtol=1e-4, atol=1e-5)


def test_compute_directions_names_a_concept_without_positives() -> None:
    pooled, positive, negative, _, _ = _planted(n_concepts=3, per_side=10)
    positive[:, 1] = False
    with pytest.raises(DirectionError, match=r"concept\(s\) c1 \(no positives\)"):
        compute_directions(_stats(pooled, positive, negative))


def test_compute_directions_rejects_an_unknown_method_and_mean_centered_with_one_concept() -> None:
    pooled, positive, negative, _, _ = _planted(n_concepts=1, per_side=10)
    with pytest.raises(DirectionError, match="use one of diff_of_means, mean_centered, lda"):
        compute_directions(_stats(pooled, positive, negative), "pca")
    with pytest.raises(DirectionError, match="at least two concepts"):
        compute_directions(_stats(pooled, positive, negative), "mean_centered")


def test_lda_diagonal_equals_a_numpy_reference_and_ignores_a_huge_variance_dimension() -> None:
    """LMs have a few residual dimensions with enormous variance: their noisy mean difference swamps
    diff_of_means, while shrinking the covariance towards its diagonal scales them down. A constant
    dimension (zero variance) must not make the solve singular."""
    from amygdala.training.directions import LDA_DIAGONAL_SHRINKAGE

    rng = np.random.default_rng(1)
    scale = np.ones(HIDDEN)
    scale[1], scale[2] = 300.0, 0.0
    signal = np.zeros(HIDDEN)
    signal[0] = 1.0
    data = np.concatenate([rng.normal(size=(400, HIDDEN)) * scale + signal, rng.normal(size=(400, HIDDEN)) * scale])
    labels = torch.tensor([[True]] * 400 + [[False]] * 400)
    stats = ConceptStats.from_pooled(torch.tensor(data, dtype=torch.float32).unsqueeze(1), labels, ~labels, ["c"], [0])
    data = torch.tensor(data, dtype=torch.float32).double().numpy()
    covariance = np.cov(data, rowvar=False, bias=True)
    alpha = LDA_DIAGONAL_SHRINKAGE
    ridge = 1e-6 * np.trace(covariance) / HIDDEN * np.eye(HIDDEN)
    shrunk = (1 - alpha) * covariance + alpha * np.diag(np.diag(covariance)) + ridge
    reference = np.linalg.solve(shrunk, data[:400].mean(0) - data[400:].mean(0))
    vector = compute_directions(stats, "lda_diagonal")[0][0]
    assert _cosine(vector, torch.tensor(reference)) > 0.99999
    dom_vector = compute_directions(stats, "diff_of_means")[0][0]
    assert _cosine(vector, torch.tensor(signal)) > 0.9 > 0.5 > _cosine(dom_vector, torch.tensor(signal))


def test_fit_directions_recovers_a_planted_direction_and_leaves_unfit_concepts_nan() -> None:
    generator = torch.Generator().manual_seed(3)
    pooled = torch.randn((80, 1, 32), generator=generator)
    planted = torch.zeros(32)
    planted[5] = 1.0
    positive = torch.zeros((80, 2), dtype=torch.bool)
    positive[:40, 0] = True
    pooled[:40, 0] += 3 * planted
    negative = torch.stack([~positive[:, 0], torch.ones(80, dtype=torch.bool)], dim=1)  # "empty": no positives
    data = LabelledTexts(("planted", "empty"), tuple(map(str, range(80))), tuple(map(str, range(80))), positive, negative)
    vectors = fit_directions(pooled, data, [7], "diff_of_means")[7]
    assert float(vectors[0] @ planted) > 0.9
    assert bool(vectors[1].isnan().all())


def _anisotropic(seed: int, per_side: int = 150) -> tuple[ConceptStats, np.ndarray, np.ndarray]:
    """One concept shifted by e0 over anisotropic noise: dim 0 has unit variance, dims 1-3 a huge one (300²),
    the rest 3²..30², and dim 0's noise shares a factor with dim 4. Returns the stats, the standardised
    activations and the Bayes-optimal discriminant Σ⁻¹δ of the true covariance (the planted direction)."""
    rng = np.random.default_rng(seed)
    scale = np.geomspace(3.0, 30.0, HIDDEN)
    scale[0], scale[1:4] = 1.0, 300.0
    mix = np.eye(HIDDEN)
    mix[0, 4] = 0.6
    sigma = mix @ np.diag(scale**2) @ mix.T
    delta = np.eye(HIDDEN)[0]
    noise = rng.normal(size=(2 * per_side, HIDDEN)) @ np.linalg.cholesky(sigma).T
    x = torch.tensor(noise + np.outer(np.arange(2 * per_side) < per_side, delta), dtype=torch.float32)
    labels = torch.tensor([[True]] * per_side + [[False]] * per_side)
    data = x.double().numpy()
    return (ConceptStats.from_pooled(x.unsqueeze(1), labels, ~labels, ["c"], [0]),
            (data - data.mean(0)) / data.std(0), np.linalg.solve(sigma, delta))


@pytest.mark.parametrize("method", ["lda_oas", "lda_rblw"])
@pytest.mark.parametrize("seed", [0, 1])
def test_data_driven_shrinkage_recovers_a_planted_direction_among_huge_variance_dimensions(method: str,
                                                                                            seed: int) -> None:
    """Shrinking towards the diagonal by a data-chosen α finds the planted discriminant (cosine > 0.75), where
    the fixed shrinkage towards a scaled identity (``lda``) is swamped by the huge-variance dimensions (< 0.3)
    and the fixed α = 0.9 ignores the correlation it should use."""
    stats, _, planted = _anisotropic(seed)
    chosen = compute_directions(stats, method)[0][0]
    identity = compute_directions(stats, "lda")[0][0]
    fixed = compute_directions(stats, "lda_diagonal")[0][0]
    target = torch.tensor(planted)
    assert _cosine(chosen, target) > 0.75
    assert _cosine(identity, target) < 0.3
    assert _cosine(chosen, target) > _cosine(fixed, target) + 0.02
    assert 0.3 < chosen_shrinkage(stats, method)[0] < 0.95


def test_oas_shrinkage_equals_sklearn_on_standardised_activations_and_rblw_is_near_ledoit_wolf() -> None:
    """OAS from the streamed sums is sklearn's OAS of the standardised texts; RBLW (Gaussian Ledoit-Wolf, the
    form the sums allow) lands near sklearn's Ledoit-Wolf of the individual texts."""
    from sklearn.covariance import OAS, ledoit_wolf_shrinkage

    stats, standardised, _ = _anisotropic(0)
    assert chosen_shrinkage(stats, "lda_oas") == pytest.approx({0: OAS().fit(standardised).shrinkage_}, rel=1e-9)
    assert chosen_shrinkage(stats, "lda_rblw")[0] == pytest.approx(ledoit_wolf_shrinkage(standardised), abs=0.03)
    assert chosen_shrinkage(stats, "lda_diagonal") is None
