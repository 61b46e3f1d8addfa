"""Concept statistics (``statistics``) -> one unit readout direction per concept and layer.

Direction methods share the signature ``(stats, layer) -> [n_concepts, hidden]`` (unit rows) and are listed
in ``DIRECTION_METHODS``:

- ``diff_of_means`` (default; CAA, Rimsky et al.): ``mean(positives) - mean(negatives)``.
- ``mean_centered``: a concept's positive mean minus the average of all concepts' positive means
  (needs at least two concepts; ignores negatives).
- ``lda``: ``(Σ + λI)^-1 (mean(positives) - mean(negatives))``, where Σ is the covariance of the pooled
  activations over all unique training texts (from the streamed second moments; one Σ shared by every concept)
  and the shrinkage ``λ = LDA_SHRINKAGE * trace(Σ) / hidden`` pulls Σ towards its average variance so the
  solve stays stable when texts are fewer than hidden dimensions.
- ``lda_diagonal``: ``((1 - α)Σ + α·diag(Σ))^-1 (mean(positives) - mean(negatives))`` with
  ``α = LDA_DIAGONAL_SHRINKAGE``: shrinks Σ towards its own diagonal, so every hidden dimension keeps its
  variance and the few huge-variance residual dimensions of LMs stop dominating the direction. The default:
  the README's method study (``benchmarks/study_methods.py``) gives the figures that chose it.
- ``lda_oas`` / ``lda_rblw``: ``lda_diagonal`` with α chosen from the data per layer, by the OAS or the
  Rao-Blackwellised Ledoit-Wolf intensity on the standardised activations (``amygdala.training.shrinkage``, from the
  covariance and the number of texts alone). ``chosen_shrinkage`` gives the α they pick (the artifact records it).

``fit_directions`` fits one method on a labelled subset of pooled texts (stability halves, layer selection's
folds), leaving NaN rows for the concepts that subset cannot fit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal

import torch

from amygdala.training import neutral
from amygdala.training.shrinkage import oas_shrinkage, rblw_shrinkage
from amygdala.training.statistics import ConceptStats, DirectionError, check_counts

if TYPE_CHECKING:
    from amygdala.training.splits import LabelledTexts

MethodName = Literal["diff_of_means", "mean_centered", "lda", "lda_diagonal", "lda_oas", "lda_rblw"]
#: The default of training and of evaluation's stability halves (chosen by benchmarks/study_methods.py).
DEFAULT_METHOD: MethodName = "lda_diagonal"
DirectionMethod = Callable[[ConceptStats, int], torch.Tensor]
ShrinkageRule = Callable[[ConceptStats, int], float]
LDA_SHRINKAGE = 0.1
LDA_DIAGONAL_SHRINKAGE = 0.9


def _unit(vectors: torch.Tensor, stats: ConceptStats, layer: int) -> torch.Tensor:
    norms = vectors.norm(dim=1, keepdim=True)
    if zero := [c for c, norm in zip(stats.concepts, norms.flatten().tolist()) if not norm > 0]:
        raise DirectionError(f"concept(s) {', '.join(zero)} have a zero direction at layer {layer}: "
                             "their positive and negative texts pool to the same mean")
    return vectors / norms


def diff_of_means(stats: ConceptStats, layer: int) -> torch.Tensor:
    """CAA: ``mean(positives) - mean(negatives)``, unit rows ``[C, H]``."""
    return _unit(stats.positive_mean(layer) - stats.negative_mean(layer), stats, layer)


def mean_centered(stats: ConceptStats, layer: int) -> torch.Tensor:
    """A concept's positive mean minus the mean of all concepts' positive means, unit rows ``[C, H]``."""
    if len(stats.concepts) < 2:
        raise DirectionError("method 'mean_centered' needs at least two concepts: use diff_of_means for one")
    means = stats.positive_mean(layer)
    return _unit(means - means.mean(dim=0, keepdim=True), stats, layer)


def lda(stats: ConceptStats, layer: int) -> torch.Tensor:
    """Shrinkage LDA: ``(Σ + λI)^-1 (mean(pos) - mean(neg))`` with ``λ = LDA_SHRINKAGE·tr(Σ)/H``, unit rows."""
    difference = stats.positive_mean(layer) - stats.negative_mean(layer)
    covariance = stats.covariance(layer)
    hidden = covariance.shape[0]
    shrinkage = LDA_SHRINKAGE * torch.trace(covariance) / hidden
    regularised = covariance + shrinkage * torch.eye(hidden, dtype=covariance.dtype, device=covariance.device)
    return _unit(torch.linalg.solve(regularised, difference.T).T, stats, layer)


def lda_diagonal(stats: ConceptStats, layer: int, alpha: float = LDA_DIAGONAL_SHRINKAGE) -> torch.Tensor:
    """LDA shrunk towards the diagonal: ``((1-α)Σ + α·diag Σ)^-1 (mean(pos) - mean(neg))``, unit rows; a
    ``1e-6·tr(Σ)/H`` ridge keeps constant dimensions solvable."""
    difference = stats.positive_mean(layer) - stats.negative_mean(layer)
    covariance = stats.covariance(layer)
    hidden = covariance.shape[0]
    ridge = 1e-6 * torch.trace(covariance) / hidden
    shrunk = ((1 - alpha) * covariance + alpha * torch.diag(torch.diagonal(covariance))
              + ridge * torch.eye(hidden, dtype=covariance.dtype, device=covariance.device))
    return _unit(torch.linalg.solve(shrunk, difference.T).T, stats, layer)


def lda_oas(stats: ConceptStats, layer: int) -> torch.Tensor:
    """``lda_diagonal`` with α = ``shrinkage.oas_shrinkage`` of this layer's statistics, unit rows."""
    return lda_diagonal(stats, layer, oas_shrinkage(stats, layer))


def lda_rblw(stats: ConceptStats, layer: int) -> torch.Tensor:
    """``lda_diagonal`` with α = ``shrinkage.rblw_shrinkage`` of this layer's statistics, unit rows."""
    return lda_diagonal(stats, layer, rblw_shrinkage(stats, layer))


DIRECTION_METHODS: dict[str, DirectionMethod] = {
    "diff_of_means": diff_of_means,
    "mean_centered": mean_centered,
    "lda": lda,
    "lda_diagonal": lda_diagonal,
    "lda_oas": lda_oas,
    "lda_rblw": lda_rblw,
}
#: The methods whose shrinkage is chosen from the data, and the rule that chooses it.
SHRINKAGE_RULES: dict[str, ShrinkageRule] = {"lda_oas": oas_shrinkage, "lda_rblw": rblw_shrinkage}


def chosen_shrinkage(stats: ConceptStats, method: str) -> dict[int, float] | None:
    """The shrinkage α a data-driven ``method`` picks at each layer of ``stats`` (None for the other methods)."""
    rule = SHRINKAGE_RULES.get(method)
    return None if rule is None else {layer: rule(stats, layer) for layer in stats.layers}


def compute_directions(stats: ConceptStats, method: str = "diff_of_means") -> dict[int, torch.Tensor]:
    """Unit readout vectors per layer, ``{layer: [C, H] float32}``."""
    if method not in DIRECTION_METHODS:
        raise DirectionError(f"method {method!r} is unknown: use one of {', '.join(DIRECTION_METHODS)}")
    check_counts(stats.concepts, stats.positive_count.tolist(), stats.negative_count.tolist())
    return {layer: DIRECTION_METHODS[method](stats, layer).to(torch.float32) for layer in stats.layers}


def fit_directions(pooled: torch.Tensor, data: LabelledTexts, layers: Sequence[int],
                   method: str | DirectionMethod, device: torch.device | str = "cpu", *,
                   neutral_pcs: int = 0) -> dict[int, torch.Tensor]:
    """Unit vectors ``{layer: [C, H]}`` on the CPU from ``pooled [n, L, H]`` (rows as ``data``) by ``method`` (a
    ``DIRECTION_METHODS`` name or a function of that signature); NaN rows for concepts lacking positives or
    negatives (the other concepts are fitted without them). One layer at a time on ``device``, so its memory
    stays a few fp64 ``H x H`` matrices (the second moment, the covariance, the solve). ``neutral_pcs`` > 0
    first removes that many principal components of the neutral texts (``amygdala.training.neutral``)."""
    rule = DIRECTION_METHODS[method] if isinstance(method, str) else method
    usable = (data.positive.sum(dim=0) > 0) & (data.negative.sum(dim=0) > 0)
    keep = usable.nonzero().flatten().tolist()
    vectors = {}
    for position, layer in enumerate(layers):
        out = torch.full((len(data.concepts), pooled.shape[-1]), math.nan)
        if keep and (rule is not mean_centered or len(keep) > 1):
            rows = pooled[:, [position]].to(device)
            stats = ConceptStats.from_pooled(rows, data.positive[:, keep].to(device),
                                             data.negative[:, keep].to(device), [data.concepts[c] for c in keep],
                                             [layer])
            out[keep] = _fit_layer(stats, rows, data, rule, neutral_pcs).float().cpu()
        vectors[layer] = out
    return vectors


def _fit_layer(stats: ConceptStats, rows: torch.Tensor, data: LabelledTexts, rule: DirectionMethod,
               neutral_pcs: int) -> torch.Tensor:
    """``rule`` at the one layer of ``stats``, after removing ``neutral_pcs`` neutral components of ``rows``."""
    (layer,) = stats.layers
    if not neutral_pcs:
        return rule(stats, layer)
    components = neutral.neutral_components(neutral.neutral_stats(rows, data, stats.layers), neutral_pcs)
    fitted = rule(neutral.project_stats(stats, components), layer)
    return neutral.project_vectors({layer: fitted}, components)[layer]
