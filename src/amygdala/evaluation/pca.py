"""Principal components of a set of concept vectors, and how well a component follows a concept rating.

``principal_components(vectors, k)`` centres the rows (concepts) and returns their scores on the first ``k``
principal components and each component's share of the variance. A component's sign is arbitrary, so
``component_r`` reports |Pearson r| between one component's scores and a rating of the same concepts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import pearsonr


@dataclass(frozen=True)
class Components:
    """``scores [n_concepts, k]`` on the first ``k`` components (columns in order), and ``explained [k]``: each
    component's share of the total variance of the centred vectors."""

    scores: torch.Tensor
    explained: torch.Tensor


def principal_components(vectors: torch.Tensor, k: int = 2) -> Components:
    """The first ``k`` principal components of the rows of ``vectors [n_concepts, hidden]`` (fp64)."""
    centred = vectors.double() - vectors.double().mean(dim=0)
    _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
    variance = singular.square()
    total = variance.sum()
    explained = variance[:k] / total if total > 0 else torch.full((min(k, len(variance)),), math.nan)
    return Components(centred @ vh[:k].T, explained)


def component_r(components: Components, index: int, rating: np.ndarray) -> float:
    """|Pearson r| between component ``index``'s scores and ``rating`` (one per concept, rows as the vectors);
    NaN under 3 concepts, for a constant rating, or when there are not that many components."""
    if len(rating) < 3 or np.ptp(rating) == 0 or components.scores.shape[1] <= index:
        return math.nan
    scores = components.scores[:, index].numpy()
    if np.ptp(scores) == 0:
        return math.nan
    return abs(float(pearsonr(scores, rating).statistic))
