"""Pooled activations + concept labels -> one unit readout direction per concept and layer.

``ConceptStats`` keeps only mergeable sums (fp64), built from a batch of pooled activations ``[B, L, H]`` and
two indicator matrices ``[B, C]`` (text is a positive / a negative of concept c) by matrix products, so
statistics for every concept come from one pass over the unique texts and memory never grows with the data.

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
  variance and the few huge-variance residual dimensions of LMs stop dominating the direction. Best on the
  bundled sample (benchmarks/study_methods.py: 5-fold AUROC 0.854 vs 0.725 for diff_of_means, mean pooling).
- ``lda_oas`` / ``lda_rblw``: ``lda_diagonal`` with α chosen from the data per layer, by the OAS or the
  Rao-Blackwellised Ledoit-Wolf intensity on the standardised activations (``amygdala.training.shrinkage``, from the
  covariance and the number of texts alone). ``chosen_shrinkage`` gives the α they pick (the artifact records it).
  On the bundled sample they pick α ≈ 0.1 and score 0.815 (the study), so the fixed 0.9 stays the default.

``fit_directions`` fits one method on a labelled subset of pooled texts (stability halves, layer selection's
folds), leaving NaN rows for the concepts that subset cannot fit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Literal

import torch

from amygdala.artifact import Calibration
from amygdala.errors import AmygdalaError
from amygdala.training.shrinkage import oas_shrinkage, rblw_shrinkage

if TYPE_CHECKING:
    from amygdala.training.splits import LabelledTexts

MethodName = Literal["diff_of_means", "mean_centered", "lda", "lda_diagonal", "lda_oas", "lda_rblw"]
#: The measured best (benchmarks/study_methods.py), the default of training and of evaluation's stability halves.
DEFAULT_METHOD: MethodName = "lda_diagonal"
DirectionMethod = Callable[["ConceptStats", int], torch.Tensor]
ShrinkageRule = Callable[["ConceptStats", int], float]
LDA_SHRINKAGE = 0.1
LDA_DIAGONAL_SHRINKAGE = 0.9


class DirectionError(AmygdalaError):
    """The labels or statistics cannot give a direction (a concept without positives or negatives, ...)."""


Sums = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _batch_sums(pooled: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> Sums:
    """(positive_sum [L,C,H], negative_sum, positive_count [C], negative_count, total_sum [L,H],
    second_moment [L,H,H])."""
    n_texts, n_layers, hidden = pooled.shape
    x = pooled.to(torch.float64)
    flat = x.reshape(n_texts, n_layers * hidden)
    pos, neg = positive.to(torch.float64), negative.to(torch.float64)
    by_layer = x.transpose(0, 1)
    return ((pos.T @ flat).reshape(-1, n_layers, hidden).transpose(0, 1),
            (neg.T @ flat).reshape(-1, n_layers, hidden).transpose(0, 1),
            positive.to(torch.int64).sum(dim=0), negative.to(torch.int64).sum(dim=0),
            x.sum(dim=0), by_layer.transpose(1, 2) @ by_layer)


@dataclass(frozen=True)
class ConceptStats:
    """Sums over pooled activations, per layer (first axis, in ``layers`` order); fp64 throughout."""

    concepts: tuple[str, ...]
    layers: tuple[int, ...]
    positive_sum: torch.Tensor  # [L, C, H]: sum of each concept's positive texts
    negative_sum: torch.Tensor  # [L, C, H]: sum of each concept's negative texts
    positive_count: torch.Tensor  # [C] int64
    negative_count: torch.Tensor  # [C] int64
    total_sum: torch.Tensor  # [L, H]: sum over all unique texts
    second_moment: torch.Tensor  # [L, H, H]: sum of x x^T over all unique texts
    n_texts: int

    @classmethod
    def from_pooled(cls, pooled: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                    concepts: Sequence[str], layers: Sequence[int]) -> ConceptStats:
        """``pooled [B, L, H]``, ``positive``/``negative`` indicator matrices ``[B, C]`` (bool or 0/1)."""
        check_shapes(pooled, positive, negative, n_concepts=len(concepts), n_layers=len(layers))
        return cls(tuple(concepts), tuple(layers), *_batch_sums(pooled, positive, negative), n_texts=pooled.shape[0])

    def merge(self, other: ConceptStats) -> ConceptStats:
        """The stats of both sets of texts (which must be disjoint)."""
        if (self.concepts, self.layers) != (other.concepts, other.layers):
            raise DirectionError("cannot merge stats over different concepts or layers")
        return ConceptStats(self.concepts, self.layers, self.positive_sum + other.positive_sum,
                            self.negative_sum + other.negative_sum, self.positive_count + other.positive_count,
                            self.negative_count + other.negative_count, self.total_sum + other.total_sum,
                            self.second_moment + other.second_moment, self.n_texts + other.n_texts)

    def position(self, layer: int) -> int:
        if layer not in self.layers:
            raise DirectionError(f"layer {layer} is not in the stats; they cover layers {list(self.layers)}")
        return self.layers.index(layer)

    def positive_mean(self, layer: int) -> torch.Tensor:
        check_counts(self.concepts, self.positive_count.tolist(), self.negative_count.tolist())
        return self.positive_sum[self.position(layer)] / self.positive_count.unsqueeze(1)

    def negative_mean(self, layer: int) -> torch.Tensor:
        check_counts(self.concepts, self.positive_count.tolist(), self.negative_count.tolist())
        return self.negative_sum[self.position(layer)] / self.negative_count.unsqueeze(1)

    def mean(self, layer: int) -> torch.Tensor:
        """Mean pooled activation over all unique texts ``[H]``."""
        return self.total_sum[self.position(layer)] / self.n_texts

    def covariance(self, layer: int) -> torch.Tensor:
        """Covariance over all unique texts ``[H, H]`` (population, from the second moment)."""
        mean = self.mean(layer)
        return self.second_moment[self.position(layer)] / self.n_texts - torch.outer(mean, mean)


class StatsAccumulator:
    """Running sums for streaming: ``add`` a batch at a time (in place), then ``freeze`` into ``ConceptStats``.

    The sums live in fp64 on ``device``, where the pooled activations are. On a CUDA device each ``add`` is
    queued on a side stream behind the work that produced the batch, so the sums of one batch overlap the next
    forward and the CPU never waits for the GPU; ``freeze`` joins the streams. Adding batches in the same order
    gives bit-identical sums, whichever way each batch was obtained.
    """

    def __init__(self, concepts: Sequence[str], layers: Sequence[int], hidden_size: int,
                 device: torch.device | str = "cpu") -> None:
        n_concepts, n_layers, f64 = len(concepts), len(layers), torch.float64
        self.concepts, self.layers, self.n_texts = tuple(concepts), tuple(layers), 0
        self.device = torch.device(device)
        self._stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        zeros = partial(torch.zeros, device=self.device)
        self._sums = [zeros(n_layers, n_concepts, hidden_size, dtype=f64),
                      zeros(n_layers, n_concepts, hidden_size, dtype=f64),
                      zeros(n_concepts, dtype=torch.int64), zeros(n_concepts, dtype=torch.int64),
                      zeros(n_layers, hidden_size, dtype=f64), zeros(n_layers, hidden_size, hidden_size, dtype=f64)]

    def add(self, pooled: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> None:
        """One batch: ``pooled [B, L, H]`` and its ``[B, C]`` label matrices, on any device (moved here)."""
        check_shapes(pooled, positive, negative, n_concepts=len(self.concepts), n_layers=len(self.layers))
        self.n_texts += pooled.shape[0]
        if self._stream is None:
            self._accumulate(pooled.to(self.device), positive.to(self.device), negative.to(self.device))
            return
        self._stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self._stream):
            tensors = [_to_device(tensor, self.device) for tensor in (pooled, positive, negative)]
            self._accumulate(*tensors)
        for tensor in (pooled, *tensors):
            if tensor.device.type == "cuda":
                tensor.record_stream(self._stream)  # the allocator keeps it until the side stream is done

    def _accumulate(self, pooled: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> None:
        for total, part in zip(self._sums, _batch_sums(pooled, positive, negative), strict=True):
            total.add_(part)

    def freeze(self) -> ConceptStats:
        """The sums so far, as ``ConceptStats`` on ``device``."""
        if self._stream is not None:
            torch.cuda.current_stream(self.device).wait_stream(self._stream)
        p_sum, n_sum, p_count, n_count, total, second = (s.clone() for s in self._sums)
        return ConceptStats(self.concepts, self.layers, p_sum, n_sum, p_count, n_count, total, second, self.n_texts)


def stats_device(model_device: torch.device) -> torch.device:
    """Where the fp64 statistics of activations on ``model_device`` live: there, except on Apple's MPS (no
    float64) and on the meta device, where the CPU does it."""
    return torch.device("cpu") if model_device.type in ("mps", "meta") else model_device


def _to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Onto ``device`` without the CPU waiting: CPU tensors go through pinned memory."""
    if tensor.device.type == "cpu" and device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device, non_blocking=True)


def check_shapes(pooled: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, *, n_concepts: int,
                 n_layers: int) -> None:
    """``pooled [B, n_layers, H]`` and two label matrices ``[B, n_concepts]``, or one DirectionError naming them."""
    expected = (pooled.shape[0], n_concepts)
    if pooled.dim() != 3 or pooled.shape[1] != n_layers or tuple(positive.shape) != expected or (
            tuple(negative.shape) != expected):
        raise DirectionError(f"pooled activations {tuple(pooled.shape)} and labels {tuple(positive.shape)} / "
                             f"{tuple(negative.shape)} do not fit: expected [texts, {n_layers} layers, hidden] and "
                             f"[texts, {n_concepts} concepts] each")


def check_counts(concepts: Sequence[str], positive: Sequence[int], negative: Sequence[int]) -> None:
    """Every concept needs at least one positive and one negative text."""
    lacking = [f"{concept} ({'no positives' if p == 0 else 'no negatives'})"
               for concept, p, n in zip(concepts, positive, negative) if p == 0 or n == 0]
    if lacking:
        raise DirectionError(f"concept(s) {', '.join(lacking)} in the train split: "
                             "add examples or leave those concepts out (--emotions)")


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


def calibrate(stats: ConceptStats, vectors: dict[int, torch.Tensor]) -> Calibration:
    """Mean and std of each concept's raw projection ``x·v`` over all unique training texts, per layer.

    From the sums alone: ``mean = μ·v`` and ``var = vᵀ E[xxᵀ] v - (μ·v)²`` (fp64; clipped at 0).
    """
    means, stds = {}, {}
    for layer in stats.layers:
        v = vectors[layer].to(torch.float64)
        mean = v @ stats.mean(layer)
        second = ((v @ stats.second_moment[stats.position(layer)]) * v).sum(dim=1) / stats.n_texts
        means[layer] = mean.to(torch.float32)
        stds[layer] = (second - mean.square()).clamp(min=0).sqrt().to(torch.float32)
    return Calibration(means, stds)


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
    from amygdala import neutral  # neutral builds on this module's ConceptStats

    components = neutral.neutral_components(neutral.neutral_stats(rows, data, stats.layers), neutral_pcs)
    fitted = rule(neutral.project_stats(stats, components), layer)
    return neutral.project_vectors({layer: fitted}, components)[layer]
