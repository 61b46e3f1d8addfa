"""``--target-layers auto``: measure every layer of the model on the train split and keep the best k.

The ``train`` split's nodes are dealt into ``folds`` parts by node key (seeded). For each part, directions are
fitted on the other parts and measured on it: per concept and layer, the AUROC of the projection of the part's
positives against its negatives. A concept's AUROC at a layer is its mean over the parts where it has positives
and negatives; a layer's score is the mean over concepts. The ``k`` best layers (ties: the shallower) are kept.
The held-out split is never read, so ``amygdala eval`` stays an unbiased measurement of the chosen layers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from amygdala.activation_cache import ActivationCache
from amygdala.activations import pool_texts
from amygdala.directions import DirectionMethod
from amygdala.evaluation import separation
from amygdala.examples import Example
from amygdala.models import LoadedModel
from amygdala.splits import LabelledTexts, fit_directions, key_folds, labelled_texts
from amygdala.training import TrainOptions

DEFAULT_K = 4
DEFAULT_FOLDS = 4


class LayerSelectionError(ValueError):
    """Layer selection cannot run with these options or examples: names every problem."""


@dataclass(frozen=True)
class LayerCurve:
    """Validation AUROC of every layer (mean and min over concepts) and the layers chosen from it."""

    layers: tuple[int, ...]
    mean_auroc: tuple[float, ...]
    min_auroc: tuple[float, ...]
    chosen: tuple[int, ...]
    method: str
    folds: int
    seed: int
    n_train_texts: int

    def to_json(self) -> dict[str, Any]:
        """JSON-ready (NaN as None): stored in the manifest under ``layer_selection``."""
        return {name: [None if isinstance(v, float) and math.isnan(v) else v for v in value]
                if isinstance(value, tuple) else value for name, value in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LayerCurve:
        floats = {name: tuple(math.nan if v is None else float(v) for v in data[name])
                  for name in ("mean_auroc", "min_auroc")}
        return cls(tuple(int(v) for v in data["layers"]), floats["mean_auroc"], floats["min_auroc"],
                   tuple(int(v) for v in data["chosen"]), str(data["method"]), int(data["folds"]),
                   int(data["seed"]), int(data["n_train_texts"]))


def _check(n_layers: int, k: int, folds: int, data: LabelledTexts) -> None:
    problems = []
    if not 1 <= k <= n_layers:
        problems.append(f"k={k} must be within 1..{n_layers} (the layers measured)")
    if folds < 2:
        problems.append(f"folds={folds} must be >= 2")
    if len(set(data.keys)) < folds:
        problems.append(f"the train split has {len(set(data.keys))} node(s), fewer than folds={folds}")
    if problems:
        raise LayerSelectionError("layer selection: " + "; ".join(problems))


def layer_curve(pooled: torch.Tensor, data: LabelledTexts, concepts: Sequence[str], layers: Sequence[int], *,
                method: str | DirectionMethod = "diff_of_means", k: int = DEFAULT_K, folds: int = DEFAULT_FOLDS,
                seed: int = 0) -> LayerCurve:
    """The curve from train-split activations ``pooled [n_texts, len(layers), hidden]`` (rows as ``data``)."""
    _check(len(layers), k, folds, data)
    per_fold = torch.full((folds, len(layers), len(concepts)), math.nan, dtype=torch.float64)
    for fold, rows in enumerate(key_folds(data.keys, folds, seed)):
        rest = sorted(set(range(len(data.texts))) - set(rows))
        vectors = fit_directions(pooled[rest], data.subset(rest), concepts, layers, method)
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


def select_layers(loaded: LoadedModel, examples: Sequence[Example], options: TrainOptions = TrainOptions(), *,
                  k: int = DEFAULT_K, folds: int = DEFAULT_FOLDS, seed: int = 0) -> LayerCurve:
    """Pool the train split at every layer (as ``options`` pool for training) and rank the layers."""
    concepts = sorted({example.emotion for example in examples})
    data = labelled_texts(examples, concepts, "train")
    _check(loaded.n_layers, k, folds, data)
    layers = list(range(loaded.n_layers))
    pooled = pool_texts(loaded, data.texts, layers, pooling=options.pooling, skip_tokens=options.pooled_skip_tokens,
                        chat_template=options.chat_template, batch_size=options.batch_size,
                        max_length=options.max_length, progress=options.progress,
                        cache=ActivationCache(options.cache_dir) if options.cache_dir else None)
    return layer_curve(pooled, data, concepts, layers, method=options.method, k=k, folds=folds, seed=seed)
