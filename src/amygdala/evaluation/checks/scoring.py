"""Readouts and statistics the checks share: texts -> one score per concept through the pooled-forward and
projection path the evaluation uses, and bootstrap intervals of shares and means."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy.stats import rankdata

from amygdala.artifact import ReadoutArtifact
from amygdala.evaluation.checks.options import CheckOptions
from amygdala.evaluation.metrics import Interval, percentile_interval
from amygdala.forward.models import LoadedModel
from amygdala.forward.pooled import pool_texts
from amygdala.readout.projection import project_pooled, projector_for


def text_scores(loaded: LoadedModel, artifact: ReadoutArtifact, texts: Sequence[str],
                options: CheckOptions) -> torch.Tensor:
    """``[len(texts), n_concepts]``: each text pooled as ``options.spec`` says, projected on the artifact's vectors
    (``project_pooled``), z-scored with the manifest's calibration when it has one (else raw), averaged over the
    artifact's layers."""
    if not texts:
        return torch.zeros((0, len(artifact.concepts)))
    pooled = pool_texts(loaded, texts, artifact.layers, options.spec, batch_size=options.batch_size,
                        batch_tokens=options.batch_tokens)
    return project_pooled(pooled, projector_for(artifact), zscore=artifact.calibration is not None).mean(dim=1)


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row pair of ``a`` and ``b`` ``[B, n]`` (average ranks for ties; NaN where a row
    is constant), vectorised for bootstrap replicates."""
    ra, rb = rankdata(a, axis=1), rankdata(b, axis=1)
    ra, rb = ra - ra.mean(axis=1, keepdims=True), rb - rb.mean(axis=1, keepdims=True)
    denominator = np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (ra * rb).sum(axis=1) / denominator, np.nan)


def mean_interval(values: Sequence[float], n_boot: int, seed: int) -> Interval:
    """The mean of the finite ``values`` with a percentile bootstrap 95% CI (resampling the values, seeded)."""
    kept = torch.tensor([v for v in values if math.isfinite(v)], dtype=torch.float64)
    if kept.numel() == 0:
        return Interval(math.nan, math.nan, math.nan)
    draws = torch.randint(len(kept), (n_boot, len(kept)), generator=torch.Generator().manual_seed(seed))
    return percentile_interval(float(kept.mean()), kept[draws].mean(dim=1))


def share_interval(hits: Sequence[bool], n_boot: int, seed: int) -> Interval:
    """The share of true ``hits`` with its bootstrap 95% CI."""
    return mean_interval([float(hit) for hit in hits], n_boot, seed)


def interval_json(interval: Interval) -> dict[str, float]:
    return {"estimate": interval.estimate, "low": interval.low, "high": interval.high}


def fmt_interval(interval: Interval) -> str:
    def one(value: float) -> str:
        return "-" if math.isnan(value) else f"{value:.3f}"

    return f"{one(interval.estimate)} [{one(interval.low)}, {one(interval.high)}]"
