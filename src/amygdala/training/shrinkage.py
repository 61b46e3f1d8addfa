"""Data-driven covariance shrinkage for ``directions``' LDA: the intensity α of
``(1 - α)Σ + α·diag(Σ)``, chosen from the streamed statistics instead of fixed.

Shrinking Σ towards its own diagonal is shrinking the correlation matrix ``R = D^-1/2 Σ D^-1/2``
(``D = diag Σ``) towards the identity: ``(1 - α)R + αI``, mapped back by ``D^1/2``. Both estimators below are the
published intensity for the target ``tr(R)/p · I`` on the standardised activations, computed from ``R`` and the
number of texts ``n`` alone, so they work on ``ConceptStats`` (sums and second moments, streamed or summed over
ranks) without the per-text rows:

- ``oas_shrinkage``: Oracle Approximating Shrinkage (Chen, Wiesel, Eldar & Hero 2010, eq. 23), exactly as
  ``sklearn.covariance.OAS`` computes it: with ``a = mean(R²)`` and ``μ = tr(R)/p``,
  ``α = min(1, (a + μ²) / ((n + 1)(a - μ²/p)))``.
- ``rblw_shrinkage``: Rao-Blackwellised Ledoit-Wolf (same paper, eq. 17), Ledoit-Wolf's intensity with its
  fourth-moment term replaced by its Gaussian expectation: ``α = min(1, ((n-2)/n·tr(R²) + tr(R)²) /
  ((n + 2)(tr(R²) - tr(R)²/p)))``. Ledoit-Wolf itself (``sklearn.covariance.ledoit_wolf_shrinkage``) needs
  ``Σ_i ‖z_i‖⁴`` of the individual standardised texts, which the streamed sums do not keep.

Dimensions with zero variance (constant over the texts) are left out of ``R`` and ``p``.
"""

from __future__ import annotations

import torch

from amygdala.training.statistics import ConceptStats

_CONSTANT = 1e-12  # variance below this fraction of the largest counts as a constant dimension


def correlation(covariance: torch.Tensor) -> torch.Tensor:
    """``R = D^-1/2 Σ D^-1/2`` over the dimensions with non-zero variance (fp64)."""
    variance = torch.diagonal(covariance)
    varying = variance > _CONSTANT * variance.max().clamp(min=torch.finfo(variance.dtype).tiny)
    inverse_std = variance[varying].rsqrt()
    return covariance[varying][:, varying] * inverse_std[:, None] * inverse_std[None, :]


def _moments(stats: ConceptStats, layer: int) -> tuple[float, float, int, int]:
    """``(tr R, tr R², p, n)`` of the standardised activations at ``layer``."""
    r = correlation(stats.covariance(layer).double())
    return float(torch.trace(r)), float(r.square().sum()), r.shape[0], stats.n_texts


def oas_shrinkage(stats: ConceptStats, layer: int) -> float:
    """OAS intensity towards the diagonal at ``layer`` (sklearn's formula on the correlation matrix)."""
    trace, trace_square, p, n = _moments(stats, layer)
    if p < 2:
        return 0.0  # one dimension: shrinkage changes nothing (sklearn returns 0 too)
    mean_square, mu = trace_square / p**2, trace / p
    denominator = (n + 1) * (mean_square - mu**2 / p)
    return 1.0 if denominator <= 0 else min((mean_square + mu**2) / denominator, 1.0)


def rblw_shrinkage(stats: ConceptStats, layer: int) -> float:
    """Rao-Blackwellised Ledoit-Wolf intensity towards the diagonal at ``layer``."""
    trace, trace_square, p, n = _moments(stats, layer)
    if p < 2:
        return 0.0
    denominator = (n + 2) * (trace_square - trace**2 / p)
    return 1.0 if denominator <= 0 else min(((n - 2) / n * trace_square + trace**2) / denominator, 1.0)
