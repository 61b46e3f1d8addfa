"""The train stage: examples -> pooled activations -> concept statistics -> readout artifact.

``train`` only composes the public halves, so callers can cache activations (``activations.iter_pooled`` /
``pool_texts``) and compare methods (``directions.DIRECTION_METHODS``) themselves:

1. ``training_set``: the ``train`` split as unique texts with, per text, the concepts it is a positive or a
   negative for (one forward per unique text, however many concepts use it);
2. ``activations.iter_pooled``: pooled ``[B, L, H]`` batches in a fixed, length-sorted order;
3. ``directions.StatsAccumulator``: running fp64 sums through the label matrices (memory independent of the
   number of examples), then ``compute_directions`` and ``calibrate``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from amygdala.activation_cache import ActivationCache
from amygdala.activations import Pooling, iter_pooled, pooling_problems
from amygdala.artifact import ReadoutArtifact
from amygdala.directions import DIRECTION_METHODS, MethodName, StatsAccumulator, calibrate, check_counts, compute_directions
from amygdala.examples import Example
from amygdala.models import DtypeName, LoadedModel, canonical_dtype

logger = logging.getLogger(__name__)

DEFAULT_DEPTHS = (0.4, 0.5667, 0.7333, 0.9)


class TrainError(ValueError):
    """Training options or examples that cannot give a readout: lists every problem found."""


# The literal CAA recipe of the original design: diff of means at the last token. The defaults below differ
# because they measured best on held-out data (mean held-out AUROC 0.843 vs 0.655 on the bundled sample with
# Gemma 3 270M; benchmarks/study_methods.py): mean pooling without the BOS token, and a diagonal-shrinkage LDA
# direction that keeps Gemma's few huge-variance dimensions from dominating.
CAA_RECIPE: dict[str, str] = {"method": "diff_of_means", "pooling": "last"}


@dataclass(frozen=True)
class TrainOptions:
    """How to train readout vectors; every field has the default the CLI shows."""

    target_layers: tuple[int, ...] | None = None
    """Decoder blocks to read (``layer_<idx>`` = HF ``hidden_states[idx+1]``); None: ``default_target_layers``."""
    pooling: Pooling = "mean"
    """``last``: the last non-pad token of each text; ``mean``: the mean over its tokens (see activations)."""
    skip_tokens: int | None = None
    """With ``mean`` pooling, leave out each text's first K tokens (a tokenizer-added BOS counts as one);
    None: 1 for ``mean`` (the BOS residual is an outlier that swamps short texts), 0 for ``last``."""
    method: MethodName = "lda_diagonal"
    """A key of ``directions.DIRECTION_METHODS``."""
    dtype: DtypeName | None = None
    """Forward-pass precision; must be the dtype the model was loaded in (None: whatever that is). Statistics
    are always fp64 and the artifact's vectors float32; the forward dtype is recorded as provenance."""
    batch_size: int = 8
    """Texts per forward pass."""
    chat_template: bool = False
    """Wrap each text as a user turn of the tokenizer's chat template (refused with ``last`` pooling when every
    text then ends in the same template token)."""
    max_length: int | None = None
    """Keep only each text's first N tokens (BOS included), so ``last`` pooling reads token N; None: no limit."""
    cache_dir: Path | None = None
    """Keep pooled per-text activations here (``ActivationCache``) so reruns skip the model and resume."""
    progress: bool = False
    """Show a progress bar (texts/s, tokens/s) when stderr is a terminal."""

    @property
    def pooled_skip_tokens(self) -> int:
        """``skip_tokens`` with its pooling-dependent default resolved."""
        if self.skip_tokens is not None:
            return self.skip_tokens
        return 1 if self.pooling == "mean" else 0


@dataclass(frozen=True)
class TrainingSet:
    """The ``train`` split as unique texts; per text, the indices of the concepts it is a positive/negative for."""

    concepts: tuple[str, ...]
    texts: tuple[str, ...]
    positive: tuple[tuple[int, ...], ...]
    negative: tuple[tuple[int, ...], ...]
    data_sha256: str

    def counts(self) -> dict[str, dict[str, int]]:
        """Unique train texts per concept and polarity."""
        table = {concept: {"positive": 0, "negative": 0} for concept in self.concepts}
        for polarity, rows in (("positive", self.positive), ("negative", self.negative)):
            for row in rows:
                for concept in row:
                    table[self.concepts[concept]][polarity] += 1
        return table

    def label_matrices(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Indicator matrices ``[len(indices), n_concepts]`` (positive, negative) for those texts."""
        shape = (len(indices), len(self.concepts))
        positive, negative = torch.zeros(shape, dtype=torch.bool), torch.zeros(shape, dtype=torch.bool)
        for row, index in enumerate(indices):
            positive[row, list(self.positive[index])] = True
            negative[row, list(self.negative[index])] = True
        return positive, negative


def data_sha256(examples: Sequence[Example]) -> str:
    """A hash of (emotion, polarity, text) of the examples, independent of their order."""
    lines = sorted(json.dumps([e.emotion, e.polarity, e.text], ensure_ascii=False) for e in examples)
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def training_set(examples: Sequence[Example]) -> TrainingSet:
    """Deduplicate the ``train`` split; concepts are every emotion named in ``examples``, sorted."""
    concepts = tuple(sorted({example.emotion for example in examples}))
    slot = {concept: index for index, concept in enumerate(concepts)}
    train = [example for example in examples if example.split == "train"]
    labels: dict[str, tuple[set[int], set[int]]] = {}
    for example in train:
        sets = labels.setdefault(example.text, (set(), set()))
        sets[0 if example.polarity == "positive" else 1].add(slot[example.emotion])
    clashes = sorted({concepts[c] for positive, negative in labels.values() for c in positive & negative})
    if clashes:
        raise TrainError(f"some train texts are both positive and negative for {', '.join(clashes)}: fix the examples")
    texts = tuple(labels)
    return TrainingSet(concepts, texts, tuple(tuple(sorted(labels[t][0])) for t in texts),
                       tuple(tuple(sorted(labels[t][1])) for t in texts), data_sha256(train))


def default_target_layers(n_layers: int) -> tuple[int, ...]:
    """Four layers evenly spread over 40-90% of the depth (where abstract features read best), e.g. 7,10,12,15
    for 18 layers; fewer on very shallow models."""
    return tuple(sorted({round(depth * (n_layers - 1)) for depth in DEFAULT_DEPTHS}))


def _option_problems(loaded: LoadedModel, options: TrainOptions, layers: Sequence[int]) -> list[str]:
    problems = []
    if bad := [layer for layer in layers if not 0 <= layer < loaded.n_layers]:
        problems.append(f"target layers {bad} out of range: the model has {loaded.n_layers} layers "
                        f"(0..{loaded.n_layers - 1})")
    if not layers or len(set(layers)) != len(layers):
        problems.append(f"target layers {list(layers)} must be distinct and at least one")
    try:
        if options.dtype is not None and canonical_dtype(options.dtype) != loaded.dtype:
            problems.append(f"dtype {options.dtype} differs from the model's {loaded.dtype}: load it with that dtype")
    except ValueError as exc:
        problems.append(str(exc))
    if options.method not in DIRECTION_METHODS:
        problems.append(f"method {options.method!r} is not one of {', '.join(DIRECTION_METHODS)}")
    return problems + pooling_problems(options.pooling, options.pooled_skip_tokens, options.batch_size, options.max_length)


def _provenance(loaded: LoadedModel, options: TrainOptions, data: TrainingSet) -> dict[str, object]:
    return {
        "model": {"id": loaded.model_id, "fingerprint": loaded.fingerprint, "n_layers": loaded.n_layers},
        "training": {"method": options.method, "pooling": options.pooling, "skip_tokens": options.pooled_skip_tokens,
                     "chat_template": options.chat_template, "forward_dtype": loaded.dtype,
                     "max_length": options.max_length, "split": "train", "data_sha256": data.data_sha256,
                     "counts": data.counts(), "n_unique_texts": len(data.texts)},
    }


def train(loaded: LoadedModel, examples: Sequence[Example], options: TrainOptions = TrainOptions()) -> ReadoutArtifact:
    """Train one unit readout vector per concept and target layer, calibrated on the training texts."""
    layers = sorted(options.target_layers or default_target_layers(loaded.n_layers))
    problems = _option_problems(loaded, options, layers)
    if not any(example.split == "train" for example in examples):
        problems.append("no examples in the train split: run `amygdala extract` or check --emotions")
    if problems:
        raise TrainError("; ".join(problems))
    data = training_set(examples)
    counts = data.counts()
    check_counts(data.concepts, [counts[c]["positive"] for c in data.concepts],
                 [counts[c]["negative"] for c in data.concepts])
    logger.info("training %d concepts on %d unique texts at layers %s", len(data.concepts), len(data.texts), layers)
    accumulator = StatsAccumulator(data.concepts, layers, loaded.hidden_size)
    cache = ActivationCache(options.cache_dir) if options.cache_dir is not None else None
    for indices, pooled in iter_pooled(loaded, data.texts, layers, pooling=options.pooling,
                                       skip_tokens=options.pooled_skip_tokens, chat_template=options.chat_template,
                                       max_length=options.max_length, batch_size=options.batch_size,
                                       cache=cache, progress=options.progress):
        accumulator.add(pooled, *data.label_matrices(indices))
    stats = accumulator.freeze()
    vectors = compute_directions(stats, options.method)
    return ReadoutArtifact(data.concepts, tuple(layers), vectors, loaded.hidden_size, "float32",
                           calibrate(stats, vectors), _provenance(loaded, options, data))
