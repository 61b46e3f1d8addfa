"""Concept statistics: the mergeable fp64 sums every direction method and the calibration are computed from.

``ConceptStats`` keeps only sums, built from a batch of pooled activations ``[B, L, H]`` and two indicator
matrices ``[B, C]`` (text is a positive / a negative of concept c) by matrix products, so statistics for every
concept come from one pass over the unique texts and memory never grows with the data. ``calibrate`` gives each
concept's projection mean and std from the same sums (the artifact's calibration, the readout's scale).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import torch

from amygdala.artifact import Calibration
from amygdala.errors import AmygdalaError


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
