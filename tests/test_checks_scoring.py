"""The battery's shared statistics against scipy: the vectorised bootstrap rho equals ``spearmanr`` row by row."""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import spearmanr

from amygdala.evaluation.checks.scoring import share_interval, spearman_rows


def test_spearman_rows_equal_scipy_with_ties_and_constant_rows() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 4, (200, 6)).astype(float)  # resampled slot values: ties and constant rows
    b = rng.normal(size=(200, 6))
    rows = spearman_rows(a, b)
    for x, y, rho in zip(a, b, rows):
        expected = float(spearmanr(x, y).statistic) if np.ptp(x) > 0 else math.nan
        assert (math.isnan(rho) and math.isnan(expected)) or math.isclose(rho, expected, abs_tol=1e-12)


def test_share_interval_brackets_the_share() -> None:
    interval = share_interval([True] * 30 + [False] * 10, n_boot=500, seed=0)
    assert interval.estimate == 0.75 and interval.low < 0.75 < interval.high
