"""The batched pooled forward: texts -> one pooled vector per text and layer, one forward per unique text.

``pool_texts`` returns all pooled vectors at once; ``iter_pooled`` streams them batch by batch (length-sorted
batches, the forward stopped after the deepest target layer), optionally through an ``ActivationCache``, and in
a data-parallel run each rank forwards its shard. The rules themselves are in ``pooling``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from tqdm import tqdm

from amygdala.forward.activation_cache import ActivationCache, CacheKey, CacheWriter, text_sha256
from amygdala.forward.batching import Batching, plan_batches
from amygdala.forward.capture import batch_inputs, capture_residuals, check_layers, encode_texts, truncated_forward
from amygdala.forward.distributed import sum_in_rank_order
from amygdala.forward.launcher import SINGLE, World
from amygdala.forward.models import LoadedModel, check_context_length
from amygdala.forward.pooling import POOLINGS, PoolingError, PoolingSpec, check_pooled_tokens


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
