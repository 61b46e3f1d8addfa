"""``TrainOptions(target_layers=AutoLayers(k))`` (``--target-layers auto:K``): measure every layer of the model on
the train split and keep the best k.

The ``train`` split's nodes are dealt into ``folds`` parts by node key (seeded). For each part, directions are
fitted on the other parts and measured on it: per concept and layer, the AUROC of the projection of the part's
positives against its negatives. A concept's AUROC at a layer is its mean over the parts where it has positives
and negatives; a layer's score is the mean over concepts. The ``k`` best layers (ties: the shallower) are kept.
The held-out split is never read, so ``amygdala eval`` stays an unbiased measurement of the chosen layers.
``training.train`` runs the selection and records the curve in the artifact's ``TrainingRecord``.

Memory, for a model of L layers and hidden size H: the pooled train texts of every layer stay on the CPU
(n x L x H fp32: 650 MB for 496 texts of a 64-layer, 5120-wide model), and the layers are scored one at a time
on the model's device: one layer's fp64 statistics and solve, about 5 H² x 8 bytes (1 GiB at H = 5120), never
the L H² of all layers at once (13 GiB). Training then takes the chosen layers' rows from the same pooled
tensor, so each text is forwarded once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from amygdala.artifact import LayerCurve
from amygdala.errors import AmygdalaError
from amygdala.evaluation.metrics import separation
from amygdala.forward.activation_cache import ActivationCache
from amygdala.forward.launcher import SINGLE, World
from amygdala.forward.models import LoadedModel
from amygdala.forward.pooled import pool_texts
from amygdala.forward.pooling import PoolingSpec
from amygdala.training.directions import DirectionMethod, fit_directions
from amygdala.training.splits import LabelledTexts, key_folds
from amygdala.training.statistics import stats_device

__all__ = ["AutoLayers", "LayerCurve", "LayerSelection", "LayerSelectionError", "layer_curve", "select_layers",
           "selection_problems"]
DEFAULT_K = 4
DEFAULT_FOLDS = 4


class LayerSelectionError(AmygdalaError):
    """Layer selection cannot run with these options or examples: names every problem."""


@dataclass(frozen=True)
class AutoLayers:
    """Choose the target layers from the data: the ``k`` best by validation AUROC over ``folds`` node folds."""

    k: int = DEFAULT_K
    folds: int = DEFAULT_FOLDS
    seed: int = 0


def selection_problems(n_layers: int, auto: AutoLayers, data: LabelledTexts) -> list[str]:
    """What makes the selection impossible (empty when nothing), before any forward pass."""
    problems = []
    if not 1 <= auto.k <= n_layers:
        problems.append(f"k={auto.k} must be within 1..{n_layers} (the layers measured)")
    if auto.folds < 2:
        problems.append(f"folds={auto.folds} must be >= 2")
    if len(set(data.keys)) < auto.folds:
        problems.append(f"the train split has {len(set(data.keys))} node(s), fewer than folds={auto.folds}")
    return problems


def _check(n_layers: int, auto: AutoLayers, data: LabelledTexts) -> None:
    if problems := selection_problems(n_layers, auto, data):
        raise LayerSelectionError("layer selection: " + "; ".join(problems))


def layer_curve(pooled: torch.Tensor, data: LabelledTexts, layers: Sequence[int], *,
                method: str | DirectionMethod = "diff_of_means", k: int = DEFAULT_K, folds: int = DEFAULT_FOLDS,
                seed: int = 0, device: torch.device | str = "cpu") -> LayerCurve:
    """The curve from train-split activations ``pooled [n_texts, len(layers), hidden]`` (rows as ``data``),
    each fold's directions fitted one layer at a time on ``device``."""
    _check(len(layers), AutoLayers(k, folds, seed), data)
    per_fold = torch.full((folds, len(layers), len(data.concepts)), math.nan, dtype=torch.float64)
    for fold, rows in enumerate(key_folds(data.keys, folds, seed)):
        rest = sorted(set(range(len(data.texts))) - set(rows))
        vectors = fit_directions(pooled[rest], data.subset(rest), layers, method, device)
        part = data.subset(rows)
        for position, layer in enumerate(layers):
            scores = pooled[rows, position] @ vectors[layer].T
            per_fold[fold, position] = torch.tensor(separation(scores, part)[0], dtype=torch.float64)
    per_concept = per_fold.nanmean(dim=0)
    if bool(per_concept.isnan().all()):
        raise LayerSelectionError("layer selection: no concept has positives and negatives in both a fitting and a "
                                  "validation part; add train examples or lower --folds")
    mean = per_concept.nanmean(dim=1).tolist()
    low = [min((v for v in row if not math.isnan(v)), default=math.nan) for row in per_concept.tolist()]
    ranked = sorted(range(len(layers)), key=lambda i: (-mean[i] if not math.isnan(mean[i]) else math.inf, layers[i]))
    return LayerCurve(tuple(layers), tuple(mean), tuple(low), tuple(sorted(layers[i] for i in ranked[:k])),
                      getattr(method, "__name__", str(method)), folds, seed, len(data.texts))


@dataclass(frozen=True)
class LayerSelection:
    """The curve, and the pooled train texts at every layer it was measured on (CPU, rows as the data)."""

    curve: LayerCurve
    pooled: torch.Tensor


def select_layers(loaded: LoadedModel, data: LabelledTexts, auto: AutoLayers, *, spec: PoolingSpec, method: str,
                  batch_size: int | None = 8, batch_tokens: int | None = None, cache: ActivationCache | None = None,
                  progress: bool = False, world: World = SINGLE) -> LayerSelection:
    """Pool ``data`` (the train split) at every layer as training pools, and rank the layers on the device the
    statistics live on. In a data-parallel ``world`` the ranks pool disjoint shards and all rank the whole."""
    _check(loaded.n_layers, auto, data)
    layers = list(range(loaded.n_layers))
    pooled = pool_texts(loaded, data.texts, layers, spec, batch_size=batch_size, batch_tokens=batch_tokens,
                        cache=cache, progress=progress, world=world)
    curve = layer_curve(pooled, data, layers, method=method, k=auto.k, folds=auto.folds, seed=auto.seed,
                        device=stats_device(loaded.device))
    return LayerSelection(curve, pooled)
