"""One vector per text and layer: the pooling spec, the pooling rules, and the batched pooled forward.

``PoolingSpec`` is everything besides the text and the model that decides a pooled vector: the rule, the
leading tokens it skips, the chat template and the length cut. Training, evaluation, layer selection, the
activation cache key and the offline readout all take this one spec, and the artifact records it.

Rules (``POOLINGS``), computed in fp32 whatever the forward dtype:

- ``last``: the hidden state of the last non-pad token, found from the attention mask (left or right padding).
- ``mean``: the mean over non-pad tokens after skipping the first ``skip_tokens`` of them. A BOS token the
  tokenizer adds (Gemma adds one, SmolLM2 does not) is a real token and counts: ``skip_tokens=1`` drops it.
  A text with no more than ``skip_tokens`` tokens keeps its last token.
- ``mean_last``: ``(1 - LAST_WEIGHT)`` times ``mean`` (same ``skip_tokens``) plus ``LAST_WEIGHT`` (0.2) times
  ``last``. Both parts are per-token readouts averaged with fixed weights, so the pooled readout still equals
  the readout of the pooled residual. Measured (benchmarks/study_methods.py, ``lda_diagonal``, default layers):
  5-fold AUROC 0.855 vs 0.854 for ``mean``, valence rho 0.539 vs 0.349; 0.2 is the largest weight that keeps
  ``mean``'s AUROC (0.3: 0.847 and 0.595; 0.5: 0.826 and 0.642).

The default, ``mean_last`` with the BOS skipped, ties ``mean`` on separating concepts and beats it on the
valence axis beyond noise (paired over the same bootstrap draws, ``mean`` minus ``mean_last``: 5-fold AUROC
-0.001 [-0.007, +0.005], valence rho -0.190 [-0.221, -0.161]; ``last``: AUROC -0.070, rho +0.106, both beyond
noise; benchmarks/study_methods.py, ``paired``). ``pool_texts`` returns all pooled vectors at once;
``iter_pooled`` streams them batch by batch (one forward per unique text, length-sorted batches, the forward
stopped after the deepest target layer), optionally through an ``ActivationCache``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from tqdm import tqdm

from amygdala.errors import AmygdalaError
from amygdala.forward.activation_cache import ActivationCache, CacheKey, CacheWriter, text_sha256
from amygdala.forward.batching import Batching, plan_batches
from amygdala.forward.capture import batch_inputs, capture_residuals, check_layers, encode_texts, truncated_forward
from amygdala.forward.distributed import SINGLE, World, sum_in_rank_order
from amygdala.forward.models import LoadedModel, check_context_length

Pooling = Literal["last", "mean", "mean_last"]
LAST_WEIGHT = 0.2
SKIPPING = ("mean", "mean_last")
"""The rules whose ``skip_tokens`` may be above 0."""
PoolingRule = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


def default_skip_tokens(pooling: str) -> int:
    """1 for the rules that take a mean (the BOS residual is an outlier that swamps short texts), 0 otherwise."""
    return 1 if pooling in SKIPPING else 0


@dataclass(frozen=True)
class PoolingSpec:
    """How each text becomes one vector per layer; the artifact records the spec it was trained with."""

    pooling: Pooling = "mean_last"
    """``last``: the last non-pad token of each text; ``mean``: the mean over its tokens (see the module doc)."""
    skip_tokens: int | None = None
    """With ``mean``, leave out each text's first K tokens (a tokenizer-added BOS counts as one); None: the
    rule's default (``default_skip_tokens``), resolved at construction, so a built spec holds an int."""
    chat_template: bool = False
    """Wrap each text as a user turn of the tokenizer's chat template (refused with ``last`` pooling when every
    text then ends in the same template token)."""
    max_length: int | None = None
    """Keep only each text's first N tokens (BOS included), so ``last`` pooling reads token N; None: no limit."""

    def __post_init__(self) -> None:
        if self.skip_tokens is None:
            object.__setattr__(self, "skip_tokens", default_skip_tokens(self.pooling))

    @property
    def skip(self) -> int:
        """``skip_tokens`` as resolved at construction."""
        return self.skip_tokens if self.skip_tokens is not None else default_skip_tokens(self.pooling)

    def problems(self) -> list[str]:
        """What is wrong with this spec (empty when nothing), for callers that collect problems."""
        problems = []
        if self.pooling not in POOLINGS:
            problems.append(f"pooling {self.pooling!r} is not one of {', '.join(POOLINGS)}")
        if self.skip < 0 or (self.skip and self.pooling not in SKIPPING):
            problems.append(f"skip_tokens {self.skip} must be >= 0, and 0 unless pooling is "
                            f"{' or '.join(map(repr, SKIPPING))}")
        if self.max_length is not None and self.max_length < 1:
            problems.append(f"max_length {self.max_length} must be >= 1 (or None for no limit)")
        return problems

    def overridden(self, *, pooling: Pooling | None = None, skip_tokens: int | None = None,
                   chat_template: bool | None = None) -> PoolingSpec:
        """This spec with the given fields replaced (None keeps one); a new rule without ``skip_tokens`` takes
        that rule's default skip rather than this spec's."""
        rule = pooling or self.pooling
        skip = skip_tokens if skip_tokens is not None else (self.skip if rule == self.pooling else None)
        return PoolingSpec(rule, skip, self.chat_template if chat_template is None else chat_template, self.max_length)


class PoolingError(AmygdalaError):
    """Pooling arguments or texts that cannot give a pooled vector: names every problem."""


class SameTokenError(PoolingError):
    """Every text would be read at the same token (e.g. a chat template's end-of-turn): the readout learns nothing."""


def pool_last(hidden: torch.Tensor, mask: torch.Tensor, skip_tokens: int = 0) -> torch.Tensor:
    """``[B, T, H]`` -> ``[B, H]`` fp32: the last position whose attention mask is 1 (any padding side)."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = torch.where(mask.bool(), positions, -1).max(dim=1).values
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last].float()


def pool_mean(hidden: torch.Tensor, mask: torch.Tensor, skip_tokens: int = 0) -> torch.Tensor:
    """``[B, T, H]`` -> ``[B, H]`` fp32: mean over non-pad tokens after the first ``skip_tokens`` real ones."""
    real = mask.bool()
    rank = real.long().cumsum(dim=1) - 1
    length = real.sum(dim=1, keepdim=True)
    keep = real & (rank >= torch.clamp(length - 1, max=skip_tokens))
    summed = torch.where(keep.unsqueeze(-1), hidden.float(), 0.0).sum(dim=1)
    return summed / keep.sum(dim=1, keepdim=True).float()


def pool_mean_last(hidden: torch.Tensor, mask: torch.Tensor, skip_tokens: int = 0) -> torch.Tensor:
    """``[B, T, H]`` -> ``[B, H]`` fp32: ``pool_mean`` and ``pool_last`` averaged with weights 0.8 and 0.2
    (``LAST_WEIGHT``): the mean keeps the separation of concepts, the last token adds its read of the whole text."""
    return (1 - LAST_WEIGHT) * pool_mean(hidden, mask, skip_tokens) + LAST_WEIGHT * pool_last(hidden, mask)


POOLINGS: dict[str, PoolingRule] = {"last": pool_last, "mean": pool_mean, "mean_last": pool_mean_last}


def pool_readout(values: torch.Tensor, spec: PoolingSpec) -> torch.Tensor:
    """One ``[n_layers, n_concepts]`` readout from one text's per-token ``values [tokens, n_layers, n_concepts]``,
    by the same rule training pools residuals with. Projection and z-score are affine, so this equals the
    readout of the pooled residual."""
    if spec.pooling not in POOLINGS:
        raise PoolingError(f"pooling {spec.pooling!r} is not supported: use {' or '.join(POOLINGS)}")
    flat = values.reshape(1, values.shape[0], -1)
    pooled = POOLINGS[spec.pooling](flat, torch.ones(flat.shape[:2], dtype=torch.long), spec.skip)
    return pooled.reshape(values.shape[1:])


def check_pooled_tokens(tokenizer: Any, token_ids: Sequence[Sequence[int]], pooling: str) -> None:
    """Refuse texts with no tokens, and ``last`` pooling that would read the same token id in every text."""
    empty = [index for index, ids in enumerate(token_ids) if not ids]
    if empty:
        raise PoolingError(f"text(s) at position(s) {empty[:10]} have no tokens: drop empty texts")
    last_ids = {ids[-1] for ids in token_ids}
    if pooling == "last" and len(token_ids) > 1 and len(last_ids) == 1:
        token_id = last_ids.pop()
        token = tokenizer.decode([token_id])
        raise SameTokenError(f"all {len(token_ids)} texts end in the same token {token!r} (id {token_id}), so "
                             "pooling 'last' would read it every time: drop --chat-template or use --pooling mean")


def forward_pooled(loaded: LoadedModel, batch: Sequence[Sequence[int]], layers: Sequence[int],
                   spec: PoolingSpec) -> torch.Tensor:
    """One truncated forward over token-id lists -> pooled ``[B, n_layers, hidden]`` fp32 on the model's input
    device. Nothing waits for it: on a GPU the pooling is queued behind the forward."""
    tokenizer: Any = loaded.tokenizer
    inputs = batch_inputs(batch, tokenizer.pad_token_id, tokenizer.padding_side, loaded.device)
    rule, slot = POOLINGS[spec.pooling], {layer: index for index, layer in enumerate(layers)}
    pooled = torch.empty((len(batch), len(layers), loaded.hidden_size), dtype=torch.float32, device=loaded.device)

    def on_residual(layer: int, hidden: torch.Tensor) -> None:
        mask = inputs["attention_mask"].to(hidden.device, non_blocking=True)  # a device_map may split the model
        pooled[:, slot[layer]] = rule(hidden, mask, spec.skip).to(pooled.device, non_blocking=True)

    with capture_residuals(loaded.model, layers, on_residual, stop_after_last=True):
        truncated_forward(loaded.model, **inputs)
    return pooled


class _PooledStream:
    """This rank's planned batches, each filled from the cache or by forwarding the texts it misses. The misses
    are planned as the batches are (``batching.plan_batches``), so a fresh run, a resumed one and every rank of
    a data-parallel run forward exactly the batches of a fresh single-process run: sums match to the bit."""

    def __init__(self, loaded: LoadedModel, texts: Sequence[str], token_ids: list[list[int]], key: CacheKey,
                 cache: ActivationCache | None, meter: _Meter) -> None:
        self.loaded, self.texts, self.token_ids, self.key, self.cache, self.meter = (
            loaded, texts, token_ids, key, cache, meter)
        self.writer = CacheWriter(cache, key)
        self.digests = [text_sha256(text) for text in texts] if cache is not None else []

    def run(self, batches: list[list[int]], batching: Batching) -> Iterator[tuple[list[int], torch.Tensor]]:
        """Yield ``(indices, pooled on the model's device)`` for each batch, in order."""
        cached = self._cached([index for batch in batches for index in batch])
        misses = [index for batch in batches for index in batch if index not in cached]
        forwards = iter(plan_batches(misses, [len(ids) for ids in self.token_ids], batching))
        rows: dict[int, torch.Tensor] = {}
        try:
            for batch in batches:
                whole = None
                while any(index not in rows and index not in cached for index in batch):
                    todo = next(forwards)
                    pooled = self._forward(todo)
                    whole = pooled if todo == batch else None
                    rows.update(zip(todo, pooled, strict=True))
                yield batch, whole if whole is not None else self._assemble(batch, rows, cached)
                for index in batch:
                    rows.pop(index, None)
        finally:
            self.writer.flush(wait=True)

    def _cached(self, indices: list[int]) -> set[int]:
        if self.cache is None:
            return set()
        hits = self.cache.contains(self.key, [self.digests[index] for index in indices])
        return {index for index, hit in zip(indices, hits, strict=True) if hit}

    def _forward(self, todo: list[int]) -> torch.Tensor:
        batch = [self.token_ids[index] for index in todo]
        pooled = forward_pooled(self.loaded, batch, self.key.layers, self.key.spec)
        if self.cache is not None:
            self.writer.add([self.digests[index] for index in todo], pooled)
        self.meter.update(len(todo), sum(len(ids) for ids in batch))
        return pooled

    def _assemble(self, batch: list[int], rows: dict[int, torch.Tensor], cached: set[int]) -> torch.Tensor:
        """A batch from forwarded rows and cache hits (read from disk, copied to the model's device)."""
        if hits := [index for index in batch if index in cached and index not in rows]:
            assert self.cache is not None
            found = self.cache.lookup(self.key, [self.digests[index] for index in hits])
            rows.update((index, row.to(self.loaded.device, non_blocking=True))
                        for index, row in zip(hits, found, strict=True) if row is not None)
            self.meter.update(len(hits), 0)
        return torch.stack([rows[index] for index in batch])


def _encoded(loaded: LoadedModel, texts: Sequence[str], layers: Sequence[int], spec: PoolingSpec,
             batching: Batching) -> tuple[list[int], list[list[int]]]:
    """Validate everything before any forward; returns (checked layers, token ids per text)."""
    problems = spec.problems() + batching.problems()
    if len(set(texts)) != len(texts):
        problems.append("texts must be distinct: deduplicate them first (pool_texts does)")
    if problems:
        raise PoolingError("; ".join(problems))
    checked = check_layers(list(layers), loaded.n_layers)
    token_ids = encode_texts(loaded.tokenizer, texts, chat_template=spec.chat_template, max_length=spec.max_length)
    check_context_length(loaded, token_ids, texts, f"shorten them or pass --max-length {loaded.context_length}")
    check_pooled_tokens(loaded.tokenizer, token_ids, spec.pooling)
    return checked, token_ids


def iter_pooled(
    loaded: LoadedModel,
    texts: Sequence[str],
    layers: Sequence[int],
    spec: PoolingSpec = PoolingSpec(),
    *,
    batch_size: int | None = None,
    batch_tokens: int | None = None,
    cache: ActivationCache | None = None,
    progress: bool = False,
    world: World = SINGLE,
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Stream ``(indices into texts, pooled [B, n_layers, hidden] fp32 on the model's device)`` over distinct
    texts.

    Batches come in a fixed order (by token count, then text), cut by ``batch_size`` texts and/or
    ``batch_tokens`` padded tokens (``batching.plan_batches``; neither: the device's default, 8 texts on a CPU
    and 8192 padded tokens on a GPU), whatever the input order and whichever rows came
    from ``cache``, so sums taken batch by batch are reproducible to the bit. In a data-parallel ``world`` this
    rank gets every ``world_size``-th batch. Texts missing from the cache are forwarded and stored as they come.
    """
    batching = Batching(batch_size, batch_tokens).for_device(loaded.device.type)
    checked, token_ids = _encoded(loaded, texts, layers, spec, batching)
    order = sorted(range(len(texts)), key=lambda index: (len(token_ids[index]), texts[index]))
    batches = world.shard(plan_batches(order, [len(ids) for ids in token_ids], batching))
    key = CacheKey(loaded.fingerprint, tuple(checked), spec, loaded.dtype)
    meter = _Meter(sum(len(batch) for batch in batches), progress, loaded.device)
    try:
        yield from _PooledStream(loaded, texts, token_ids, key, cache, meter).run(batches, batching)
    finally:
        meter.close()


class _Meter:
    """A tqdm bar over texts with tokens/s of the forward passes; silent unless asked and on a TTY."""

    def __init__(self, total: int, enabled: bool, device: torch.device) -> None:
        self.bar = tqdm(total=total, unit="text", desc=f"pooling on {device}", disable=None if enabled else True,
                        leave=False)
        self.tokens, self.start = 0, time.perf_counter()

    def update(self, texts: int, tokens: int) -> None:
        self.tokens += tokens
        self.bar.update(texts)
        if tokens:
            self.bar.set_postfix_str(f"{self.tokens / max(time.perf_counter() - self.start, 1e-9):,.0f} tok/s")

    def close(self) -> None:
        self.bar.close()


def pool_texts(
    loaded: LoadedModel,
    texts: Sequence[str],
    layers: Sequence[int],
    spec: PoolingSpec = PoolingSpec(),
    *,
    batch_size: int | None = None,
    batch_tokens: int | None = None,
    cache: ActivationCache | None = None,
    progress: bool = False,
    world: World = SINGLE,
) -> torch.Tensor:
    """Pooled activations ``[len(texts), len(layers), hidden]`` fp32 on the CPU in input order (one forward per
    unique text). Each batch is copied off the device as it completes, without waiting for it. In a
    data-parallel ``world`` each rank pools its shard and every rank gets the whole tensor."""
    unique = list(dict.fromkeys(texts))
    staged = torch.empty((len(unique), len(layers), loaded.hidden_size), dtype=torch.float32,
                         pin_memory=loaded.device.type == "cuda")
    filled: list[int] = []
    for indices, pooled in iter_pooled(loaded, unique, layers, spec, batch_size=batch_size,
                                       batch_tokens=batch_tokens, cache=cache, progress=progress, world=world):
        staged[len(filled):len(filled) + len(indices)].copy_(pooled, non_blocking=True)
        filled += indices
    if loaded.device.type == "cuda":
        torch.cuda.synchronize(loaded.device)
    out = torch.zeros((len(unique), len(layers), loaded.hidden_size), dtype=torch.float32)
    out[filled] = staged[:len(filled)]
    if world.is_parallel:
        out = sum_in_rank_order(world, [out])[0]  # every row is filled on exactly one rank, zero elsewhere
    position = {text: index for index, text in enumerate(unique)}
    return out[[position[text] for text in texts]]
