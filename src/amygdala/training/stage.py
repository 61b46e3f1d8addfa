"""The train stage: examples -> pooled activations -> concept statistics -> readout artifact.

``train`` only composes the public halves, so callers can cache activations (``pooling.iter_pooled`` /
``pool_texts``) and compare methods (``directions.DIRECTION_METHODS``) themselves:

1. ``splits.labelled_texts``: the ``train`` split as unique texts with, per text, the concepts it is a positive
   or a negative for (one forward per unique text, however many concepts use it);
2. with ``target_layers=AutoLayers(k)``, ``layer_selection.select_layers`` picks the layers (its curve is
   recorded in the artifact);
3. ``pooling.iter_pooled``: pooled ``[B, L, H]`` batches in a fixed, length-sorted order;
4. ``directions.StatsAccumulator``: running fp64 sums through the label matrices (memory independent of the
   number of examples), then ``compute_directions`` and ``calibrate``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from amygdala.artifact import LayerCurve, ModelIdentity, ReadoutArtifact, TrainingRecord
from amygdala.errors import AmygdalaError
from amygdala.extraction.examples import Example
from amygdala.forward.activation_cache import ActivationCache
from amygdala.forward.batching import Batching
from amygdala.forward.distributed import check_same_inputs, sum_in_rank_order
from amygdala.forward.launcher import SINGLE, World
from amygdala.forward.models import DtypeName, LoadedModel, canonical_dtype
from amygdala.forward.pooled import iter_pooled
from amygdala.forward.pooling import PoolingSpec
from amygdala.training.directions import (
    DEFAULT_METHOD,
    DIRECTION_METHODS,
    MethodName,
    chosen_shrinkage,
    compute_directions,
)
from amygdala.training.layers import AutoLayers, select_layers, selection_problems
from amygdala.training.lexical import (
    DEFAULT_LEXICAL,
    LEXICAL_RULES,
    LexicalRule,
    hard_negative_stats,
    uses_negatives,
    uses_projection,
    word_projection,
)
from amygdala.training.neutral import (
    check_neutral_count,
    neutral_components,
    neutral_rows,
    project_stats,
    project_vectors,
)
from amygdala.training.splits import LabelledTexts, labelled_texts
from amygdala.training.statistics import ConceptStats, StatsAccumulator, calibrate, check_counts, stats_device

logger = logging.getLogger(__name__)

DEFAULT_DEPTHS = (0.4, 0.5667, 0.7333, 0.9)
DEFAULT_NEUTRAL_PCS = 0
_ROWS_PER_ADD = 256  # texts per statistics batch when the pooled rows are already in memory


class TrainError(AmygdalaError):
    """Training options or examples that cannot give a readout: lists every problem found."""


# The literal CAA recipe of the original design: diff of means at the last token. The defaults below differ
# because they measured best (5-fold mean AUROC 0.855 vs 0.701 on the bundled sample with Gemma 3 270M;
# benchmarks/study_methods.py): 0.8 x the mean without the BOS token + 0.2 x the last token (``mean_last``), and
# a diagonal-shrinkage LDA direction that keeps Gemma's few huge-variance dimensions from dominating.
# Neutral-PC removal changed no figure of the study beyond paired noise for that method, so DEFAULT_NEUTRAL_PCS
# is 0.
CAA_RECIPE: dict[str, Any] = {"method": "diff_of_means", "pooling": PoolingSpec("last"), "lexical": "none"}


@dataclass(frozen=True)
class TrainOptions:
    """How to train readout vectors; every field has the default the CLI shows."""

    target_layers: tuple[int, ...] | AutoLayers | None = None
    """Decoder blocks to read (``layer_<idx>`` = HF ``hidden_states[idx+1]``); ``AutoLayers(k)``: the k best by
    validation AUROC on the train split (``layer_selection``); None: ``default_target_layers``."""
    pooling: PoolingSpec = field(default_factory=PoolingSpec)
    """How each text becomes one vector per layer (rule, skipped tokens, chat template, length cut)."""
    method: MethodName = DEFAULT_METHOD
    """A key of ``directions.DIRECTION_METHODS``."""
    neutral_pcs: int = DEFAULT_NEUTRAL_PCS
    """Remove this many principal components of the neutral train texts (positive for no concept) before
    fitting (``amygdala.training.neutral``); 0: none. The artifact keeps ordinary unit vectors ``Pv``. Automatic layer
    selection (``AutoLayers``) scores the layers without it."""
    lexical: LexicalRule = DEFAULT_LEXICAL
    """Keep the vectors from firing on a concept's name alone (``training.lexical``): ``negatives`` (default) mixes
    the mean of template texts that name the concepts into each concept's negatives, ``project`` removes the
    name's own direction from each vector, ``both`` does both; ``none``: neither (the original recipe)."""
    dtype: DtypeName | None = None
    """Forward-pass precision; must be the dtype the model was loaded in (None: whatever that is). Statistics
    are always fp64 and the artifact's vectors float32; the forward dtype is recorded in the training record."""
    batch_size: int | None = None
    """Most texts per forward pass; None: only ``batch_tokens`` caps a batch (both None: the device's default,
    8 texts on a CPU, 8192 padded tokens on a GPU; ``batching.Batching.for_device``)."""
    batch_tokens: int | None = None
    """Most padded tokens (texts x the longest) per forward pass of the length-sorted texts, so short texts fill
    a batch and a long one does not shrink the others'; None: only ``batch_size`` caps."""
    cache_dir: Path | None = None
    """Keep pooled per-text activations here (``ActivationCache``) so reruns skip the model and resume."""
    progress: bool = False
    """Show a progress bar (texts/s, tokens/s) when stderr is a terminal."""


def data_sha256(examples: Sequence[Example]) -> str:
    """A hash of (emotion, polarity, text) of the examples, independent of their order."""
    lines = sorted(json.dumps([e.emotion, e.polarity, e.text], ensure_ascii=False) for e in examples)
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def default_target_layers(n_layers: int) -> tuple[int, ...]:
    """Four layers evenly spread over 40-90% of the depth (where abstract features read best), e.g. 7,10,12,15
    for 18 layers; fewer on very shallow models."""
    return tuple(sorted({round(depth * (n_layers - 1)) for depth in DEFAULT_DEPTHS}))


def training_texts(examples: Sequence[Example]) -> LabelledTexts:
    """The ``train`` split as unique labelled texts; concepts are every emotion named in ``examples``, sorted."""
    data = labelled_texts(examples, sorted({example.emotion for example in examples}), "train")
    if clashes := data.clashes():
        raise TrainError(f"some train texts are both positive and negative for {', '.join(clashes)}: fix the examples")
    return data


def _layer_problems(loaded: LoadedModel, options: TrainOptions, data: LabelledTexts) -> list[str]:
    if isinstance(options.target_layers, AutoLayers):
        return ["layer selection: " + "; ".join(problems)] if (
            problems := selection_problems(loaded.n_layers, options.target_layers, data)) else []
    layers = sorted(options.target_layers or default_target_layers(loaded.n_layers))
    problems = []
    if bad := [layer for layer in layers if not 0 <= layer < loaded.n_layers]:
        problems.append(f"target layers {bad} out of range: the model has {loaded.n_layers} layers "
                        f"(0..{loaded.n_layers - 1})")
    if not layers or len(set(layers)) != len(layers):
        problems.append(f"target layers {list(layers)} must be distinct and at least one")
    return problems


def _option_problems(loaded: LoadedModel, options: TrainOptions, data: LabelledTexts) -> list[str]:
    problems = _layer_problems(loaded, options, data)
    try:
        if options.dtype is not None and canonical_dtype(options.dtype) != loaded.dtype:
            problems.append(f"dtype {options.dtype} differs from the model's {loaded.dtype}: load it with that dtype")
    except ValueError as exc:
        problems.append(str(exc))
    if options.lexical not in LEXICAL_RULES:
        problems.append(f"lexical {options.lexical!r} is not one of {', '.join(LEXICAL_RULES)}")
    if options.method not in DIRECTION_METHODS:
        problems.append(f"method {options.method!r} is not one of {', '.join(DIRECTION_METHODS)}")
    problems += Batching(options.batch_size, options.batch_tokens).problems()
    if not data.texts:
        problems.append("no examples in the train split: run `amygdala extract` or check --emotions")
    if options.neutral_pcs < 0:
        problems.append(f"neutral_pcs (--remove-neutral-pcs) {options.neutral_pcs} must be >= 0")
    try:
        check_neutral_count(int(neutral_rows(data).sum()), options.neutral_pcs)
    except AmygdalaError as exc:
        problems.append(str(exc))
    return problems + options.pooling.problems()


def _statistics(loaded: LoadedModel, data: LabelledTexts, options: TrainOptions, world: World,
                cache: ActivationCache | None) -> tuple[ConceptStats, ConceptStats, LayerCurve | None]:
    """The fp64 sums at the target layers, on the statistics device, summed over the ranks of ``world``: of
    every train text, and of the neutral ones alone (over no concepts); and the layer curve when the layers are
    chosen automatically (then taken from the selection's pooled texts, which hold every layer: one forward per
    text)."""
    device = stats_device(loaded.device)
    if isinstance(options.target_layers, AutoLayers):
        selection = select_layers(loaded, data, options.target_layers, spec=options.pooling, method=options.method,
                                  batch_size=options.batch_size, batch_tokens=options.batch_tokens, cache=cache,
                                  progress=options.progress, world=world)
        layers = list(selection.curve.chosen)
        accumulators = _Accumulators(data, layers, loaded.hidden_size, device)
        for start in range(0, len(data.texts), _ROWS_PER_ADD):  # every rank holds every row: no sum over ranks
            rows = list(range(start, min(start + _ROWS_PER_ADD, len(data.texts))))
            accumulators.add(rows, selection.pooled[rows][:, layers])
        return accumulators.stats.freeze(), accumulators.neutral.freeze(), selection.curve
    layers = sorted(options.target_layers or default_target_layers(loaded.n_layers))
    accumulators = _Accumulators(data, layers, loaded.hidden_size, device)
    for indices, pooled in iter_pooled(loaded, data.texts, layers, options.pooling, batch_size=options.batch_size,
                                       batch_tokens=options.batch_tokens, cache=cache, progress=options.progress,
                                       world=world):
        accumulators.add(indices, pooled)
    neutral = accumulators.neutral.freeze()  # summed over ranks only when it is used
    return (sum_over_ranks(accumulators.stats.freeze(), world),
            sum_over_ranks(neutral, world) if options.neutral_pcs else neutral, None)


class _Accumulators:
    """The running sums of every train text and of the neutral ones (positive for no concept)."""

    def __init__(self, data: LabelledTexts, layers: Sequence[int], hidden_size: int, device: torch.device) -> None:
        self.data, self.is_neutral = data, neutral_rows(data)
        self.stats = StatsAccumulator(data.concepts, layers, hidden_size, device)
        self.neutral = StatsAccumulator((), layers, hidden_size, device)

    def add(self, indices: Sequence[int], pooled: torch.Tensor) -> None:
        self.stats.add(pooled, self.data.positive[indices], self.data.negative[indices])
        neutral = self.is_neutral[indices]
        if bool(neutral.any()):
            empty = torch.zeros((int(neutral.sum()), 0), dtype=torch.bool)
            self.neutral.add(pooled[neutral.to(pooled.device)], empty, empty)


def fit_statistics(stats: ConceptStats, neutral: ConceptStats, method: str,
                   neutral_pcs: int) -> tuple[dict[int, torch.Tensor], dict[int, float] | None]:
    """Unit vectors per layer by ``method`` after removing ``neutral_pcs`` principal components of the
    ``neutral`` texts (as ``Pv``), and the shrinkage a data-driven method chose per layer (else None)."""
    if not neutral_pcs:
        return compute_directions(stats, method), chosen_shrinkage(stats, method)
    components = neutral_components(neutral, neutral_pcs)
    projected = project_stats(stats, components)
    return (project_vectors(compute_directions(projected, method), components),
            chosen_shrinkage(projected, method))


def sum_over_ranks(stats: ConceptStats, world: World) -> ConceptStats:
    """The statistics of every rank's shard, summed in rank order (``stats`` itself in a single process)."""
    if not world.is_parallel:
        return stats
    count = torch.tensor([stats.n_texts], dtype=torch.int64, device=stats.total_sum.device)
    p_sum, n_sum, p_count, n_count, total, second, n_texts = sum_in_rank_order(world, [
        stats.positive_sum, stats.negative_sum, stats.positive_count, stats.negative_count, stats.total_sum,
        stats.second_moment, count])
    return ConceptStats(stats.concepts, stats.layers, p_sum, n_sum, p_count, n_count, total, second,
                        int(n_texts.item()))


def _checked_data(loaded: LoadedModel, examples: Sequence[Example], options: TrainOptions,
                  world: World) -> LabelledTexts:
    """The train split, once every option and count is valid and every rank was given the same inputs."""
    data = training_texts(examples)
    if problems := _option_problems(loaded, options, data):
        raise TrainError("; ".join(problems))
    counts = data.counts()
    check_counts(data.concepts, [counts[c]["positive"] for c in data.concepts],
                 [counts[c]["negative"] for c in data.concepts])
    check_same_inputs(world, "training data, model or options", {
        "data": data_sha256(examples), "model": loaded.fingerprint, "dtype": loaded.dtype,
        "options": [repr(options.target_layers), options.method, repr(options.pooling), options.batch_size,
                    options.batch_tokens, options.neutral_pcs, options.lexical]})
    return data


def train(loaded: LoadedModel, examples: Sequence[Example], options: TrainOptions = TrainOptions(),
          world: World = SINGLE) -> ReadoutArtifact:
    """Train one unit readout vector per concept and target layer, calibrated on the training texts.

    Statistics, directions and calibration are computed where the activations are (the model's device); only
    the finished vectors and calibration move to the CPU. In a data-parallel ``world`` (``distributed``) each
    rank forwards its shard of the texts, the ranks sum their statistics in rank order, and every rank returns
    the same artifact.
    """
    data = _checked_data(loaded, examples, options, world)
    cache = ActivationCache(options.cache_dir) if options.cache_dir is not None else None
    logger.info("training %d concepts on %d unique texts on %s", len(data.concepts), len(data.texts), loaded.device)
    stats, neutral, curve = _statistics(loaded, data, options, world, cache)
    batching = {"batch_size": options.batch_size, "batch_tokens": options.batch_tokens}
    mixed = hard_negative_stats(loaded, stats, options.pooling, cache, world, **batching) \
        if uses_negatives(options.lexical) else stats
    vectors, shrinkage = fit_statistics(mixed, neutral, options.method, options.neutral_pcs)
    if uses_projection(options.lexical):
        vectors = word_projection(loaded, vectors, stats.concepts, options.pooling, cache, world, **batching)
    calibration = calibrate(stats, vectors)
    counts = data.counts()
    record = TrainingRecord(
        model=ModelIdentity(loaded.model_id, loaded.fingerprint, loaded.n_layers), method=options.method,
        pooling=options.pooling, forward_dtype=loaded.dtype,
        counts={concept: (row["positive"], row["negative"]) for concept, row in counts.items()},
        n_unique_texts=len(data.texts), data_sha256=data_sha256([e for e in examples if e.split == "train"]),
        layer_curve=curve, world_size=world.world_size, shrinkage=shrinkage, neutral_pcs=options.neutral_pcs,
        lexical=options.lexical)
    return ReadoutArtifact(data.concepts, stats.layers, {layer: v.cpu() for layer, v in vectors.items()},
                           loaded.hidden_size, "float32", calibration.to_cpu(), record)
