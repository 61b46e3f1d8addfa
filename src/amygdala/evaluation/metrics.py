"""The figures evaluation and layer selection measure, each a plain function of scores, labels or vectors.

- ``auroc`` / ``cohens_d`` / ``separation``: how a concept's positives score against its negatives
  (``sklearn.metrics.roc_auc_score``; Cohen's d with the pooled n-1 standard deviation);
- ``filtered_ranks``: the rank of the true concept among all concepts, not counting the text's other positives;
- ``cosine_matrix``, ``phi_matrix``, ``explained_by_others``: cross-talk between concept vectors and labels;
- ``random_unit_directions``: the seeded chance baseline;
- ``bootstrap_weights`` / ``weighted_auroc`` / ``percentile_interval``: the node bootstrap behind every 95%
  confidence interval (resampling nodes, not texts, since one node's texts are not independent);
- ``paired_difference``: one variant's figure minus another's, with the 95% CI of the difference over the SAME
  bootstrap draws (the replicates of both, draw by draw), far narrower than two separate CIs when both
  variants score the same texts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.linear_model import Ridge
from sklearn.metrics import roc_auc_score

from amygdala.errors import AmygdalaError
from amygdala.training.splits import LabelledTexts


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Area under the ROC curve of scores, positives against negatives; NaN when either side is empty."""
    if len(positive) == 0 or len(negative) == 0:
        return math.nan
    labels = np.r_[np.ones(len(positive)), np.zeros(len(negative))]
    return float(roc_auc_score(labels, np.r_[positive, negative]))


def cohens_d(positive: np.ndarray, negative: np.ndarray) -> float:
    """``(mean(pos) - mean(neg)) / pooled std`` (n-1 dof); NaN with fewer than 3 scores or no spread."""
    n1, n2 = len(positive), len(negative)
    if n1 == 0 or n2 == 0 or n1 + n2 < 3:
        return math.nan
    spread = ((n1 - 1) * np.var(positive, ddof=1 if n1 > 1 else 0)
              + (n2 - 1) * np.var(negative, ddof=1 if n2 > 1 else 0)) / (n1 + n2 - 2)
    return float((np.mean(positive) - np.mean(negative)) / math.sqrt(spread)) if spread > 0 else math.nan


def separation(scores: torch.Tensor, data: LabelledTexts) -> tuple[list[float], list[float]]:
    """Per concept, AUROC and Cohen's d of ``scores [n_texts, n_concepts]``, positives against negatives."""
    values = scores.double().numpy()
    pairs = [(values[data.positive[:, c].numpy(), c], values[data.negative[:, c].numpy(), c])
             for c in range(values.shape[1])]
    return [auroc(p, n) for p, n in pairs], [cohens_d(p, n) for p, n in pairs]


def random_unit_directions(n_layers: int, n_concepts: int, hidden: int, seed: int) -> torch.Tensor:
    """Seeded random unit vectors ``[n_layers, n_concepts, hidden]`` (the chance baseline)."""
    draws = torch.randn((n_layers, n_concepts, hidden), generator=torch.Generator().manual_seed(seed))
    return draws / draws.norm(dim=-1, keepdim=True)


def filtered_ranks(z: torch.Tensor, data: LabelledTexts) -> tuple[list[int], list[int], list[int]]:
    """For each positive (text, concept): (true concept, its filtered rank from 1, best-scoring allowed concept)."""
    truths, ranks, picks = [], [], []
    for row, concept in data.positive.nonzero().tolist():
        allowed = ~data.positive[row]
        allowed[concept] = True
        scores = torch.where(allowed, z[row], -math.inf)
        truths.append(concept)
        ranks.append(1 + int((scores > scores[concept]).sum()))
        picks.append(int(scores.argmax()))
    return truths, ranks, picks


def cosine_matrix(vectors: torch.Tensor) -> torch.Tensor:
    """Cosines between the rows of ``vectors [n_concepts, hidden]``."""
    unit = vectors.double() / vectors.double().norm(dim=1, keepdim=True)
    return unit @ unit.T


def phi_matrix(labels: torch.Tensor) -> torch.Tensor:
    """Phi coefficient (Pearson correlation of 0/1 labels) between the columns of ``labels [n, C]``; NaN where
    a column is constant."""
    x = labels.double()
    centred = x - x.mean(dim=0)
    spread = centred.norm(dim=0)
    return (centred.T @ centred) / torch.outer(spread, spread)


def explained_by_others(vectors: torch.Tensor, alpha: float) -> list[float]:
    """Per concept, the ridge R² of its vector regressed on the other concepts' vectors (hidden dims as samples)."""
    matrix = vectors.double().numpy()
    explained = []
    for c in range(matrix.shape[0]):
        others = np.delete(matrix, c, axis=0).T
        if others.shape[1] == 0:
            explained.append(0.0)
            continue
        fit = Ridge(alpha=alpha, fit_intercept=False).fit(others, matrix[c])
        residual = matrix[c] - fit.predict(others)
        explained.append(float(1 - residual @ residual / (matrix[c] @ matrix[c])))
    return explained


@dataclass(frozen=True)
class Interval:
    """A point estimate and its bootstrap 95% confidence interval (percentiles 2.5 and 97.5; NaN: unmeasured)."""

    estimate: float
    low: float
    high: float


def bootstrap_weights(keys: Sequence[str], n_boot: int, seed: int) -> torch.Tensor:
    """``[n_boot, n_texts]`` float64: how often each text is drawn when the distinct node ``keys`` are resampled
    with replacement (a node's texts are drawn together), seeded."""
    distinct = sorted(set(keys))
    slot = {key: index for index, key in enumerate(distinct)}
    draws = torch.randint(len(distinct), (n_boot, len(distinct)), generator=torch.Generator().manual_seed(seed))
    per_node = torch.zeros((n_boot, len(distinct)), dtype=torch.float64)
    per_node.scatter_add_(1, draws, torch.ones_like(draws, dtype=torch.float64))
    return per_node[:, [slot[key] for key in keys]]


def weighted_auroc(scores: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                   weights: torch.Tensor) -> torch.Tensor:
    """AUROC of ``scores [n]``, ``positive`` rows against ``negative`` rows (bool ``[n]``), for each row of
    ``weights [B, n]`` (a text drawn k times counts k times; ties count one half, as ``roc_auc_score``): ``[B]``
    float64, NaN where a replicate draws no positive or no negative. By distinct score values, so memory is
    ``B x n``, never positives x negatives."""
    values, group = torch.unique(scores.double(), sorted=True, return_inverse=True)
    per_value = torch.zeros((weights.shape[0], len(values)), dtype=torch.float64)

    def summed(mask: torch.Tensor) -> torch.Tensor:
        return per_value.index_add(1, group[mask], weights[:, mask].double())

    pos, neg = summed(positive), summed(negative)
    below = neg.cumsum(dim=1) - neg  # negative weight strictly below each value
    pairs = pos.sum(dim=1) * neg.sum(dim=1)
    return (pos * (below + 0.5 * neg)).sum(dim=1) / torch.where(pairs > 0, pairs, math.nan)


def percentile_interval(estimate: float, replicates: torch.Tensor) -> Interval:
    """``estimate`` with the 2.5th and 97.5th percentiles of the finite ``replicates`` (NaN when none)."""
    kept = replicates[torch.isfinite(replicates)].double()
    if math.isnan(estimate) or kept.numel() == 0:
        return Interval(estimate, math.nan, math.nan)
    low, high = torch.quantile(kept, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return Interval(estimate, low, high)


@dataclass(frozen=True)
class PairedDifference:
    """Figure ``a`` minus figure ``b`` of two variants measured on the same data, with the percentile 95% CI of
    the difference over the same bootstrap draws; ``sign``: +1 when the CI lies above 0 (``a`` better beyond
    noise), -1 when it lies below 0, 0 when it includes 0 or is unmeasured."""

    a: float
    b: float
    difference: Interval

    @property
    def sign(self) -> int:
        if self.difference.low > 0:
            return 1
        if self.difference.high < 0:
            return -1
        return 0

    def summary(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "difference": self.difference.estimate,
                "difference_ci": [self.difference.low, self.difference.high], "sign": self.sign}


class PairingError(AmygdalaError):
    """Two figures whose bootstrap replicates do not come from the same draws."""


def paired_difference(a: float, a_replicates: torch.Tensor, b: float, b_replicates: torch.Tensor) -> PairedDifference:
    """``a - b`` with the percentile 95% CI of ``a_replicates - b_replicates`` (``[n_boot]`` each, replicate i
    of both computed on bootstrap draw i; draws where either is NaN are left out)."""
    if a_replicates.shape != b_replicates.shape:
        raise PairingError(f"paired replicates {tuple(a_replicates.shape)} and {tuple(b_replicates.shape)} "
                           "must come from the same draws")
    return PairedDifference(a, b, percentile_interval(a - b, a_replicates.double() - b_replicates.double()))


def spearman(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Spearman's rank correlation (``scipy.stats.spearmanr``); NaN when either side is constant or has fewer
    than 3 values."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(spearmanr(x, y).statistic) if len(x) > 2 and np.ptp(x) > 0 and np.ptp(y) > 0 else math.nan


def rho_interval(scores: np.ndarray, ratings: np.ndarray, n_boot: int, seed: int) -> tuple[Interval, torch.Tensor]:
    """Spearman's rho of ``scores`` against human ``ratings`` with its percentile CI, and its replicates over
    ``n_boot`` seeded draws of the rated items with replacement (kept for paired differences)."""
    draws = np.random.default_rng(seed).integers(0, len(scores), size=(n_boot, len(scores)))
    replicates = torch.tensor([spearman(scores[d], ratings[d]) for d in draws], dtype=torch.float64)
    return percentile_interval(spearman(scores, ratings), replicates), replicates
