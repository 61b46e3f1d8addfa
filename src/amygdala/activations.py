"""Residual-stream capture on decoder-layer modules with forward hooks, and per-text pooling.

``layer_<idx>`` = the output of decoder block ``idx`` (the residual stream after it) = HF
``hidden_states[idx + 1]``. Training (pooled per text) and readout (per token) both capture through
``capture_residuals``, so a vector trained here reads the same tensor at run time.

Pooling (``POOLINGS``), one vector per text and layer, computed in fp32 whatever the forward dtype:

- ``last``: the hidden state of the last non-pad token, found from the attention mask (left or right padding).
- ``mean``: the mean over non-pad tokens after skipping the first ``skip_tokens`` of them. A BOS token the
  tokenizer adds (Gemma adds one, SmolLM2 does not) is a real token and counts: ``skip_tokens=1`` drops it.
  A text with no more than ``skip_tokens`` tokens keeps its last token.

``pool_texts`` returns all pooled vectors at once; ``iter_pooled`` streams them batch by batch (one forward per
unique text, length-sorted batches, the forward stopped after the deepest target layer), optionally through an
``ActivationCache``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
from torch import nn
from tqdm import tqdm

from amygdala.activation_cache import ActivationCache, CacheKey, text_sha256
from amygdala.models import LoadedModel, check_context_length, decoder_layers

ResidualCallback = Callable[[int, torch.Tensor], None]


class StopForward(Exception):
    """Raised from the deepest hooked layer to truncate the forward pass (no later layers, no LM head)."""


def residual_from_output(output: object) -> torch.Tensor:
    """A decoder block returns its hidden states, or a tuple whose first item they are."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"decoder layer returned {type(output).__name__}; expected a tensor or a tuple starting with one")


def check_layers(layers: Sequence[int], n_layers: int, *, what: str = "target layers") -> list[int]:
    """Validate layer indices against the model depth: distinct, in 0..n_layers-1."""
    bad = [layer for layer in layers if not 0 <= layer < n_layers]
    if bad:
        raise ValueError(f"{what} {bad} out of range: the model has {n_layers} layers (0..{n_layers - 1})")
    if len(set(layers)) != len(layers):
        raise ValueError(f"{what} {list(layers)} contain duplicates")
    if not layers:
        raise ValueError(f"{what} are empty: give at least one layer index")
    return list(layers)


@contextmanager
def capture_residuals(
    model: nn.Module,
    layers: Sequence[int],
    on_residual: ResidualCallback,
    *,
    stop_after_last: bool = False,
) -> Iterator[None]:
    """Call ``on_residual(layer, hidden[batch, seq, hidden])`` after each hooked decoder block.

    With ``stop_after_last`` the deepest hooked block raises ``StopForward``; wrap the forward in
    ``truncated_forward`` to swallow it. Hooks are always removed, also on error.
    """
    blocks = decoder_layers(model)
    layers = check_layers(layers, len(blocks))
    deepest = max(layers)
    handles = []

    def make_hook(layer: int) -> Callable[[nn.Module, object, object], None]:
        def hook(_module: nn.Module, _inputs: object, output: object) -> None:
            on_residual(layer, residual_from_output(output))
            if stop_after_last and layer == deepest:
                raise StopForward

        return hook

    try:
        for layer in layers:
            handles.append(blocks[layer].register_forward_hook(make_hook(layer)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def truncated_forward(model: nn.Module, **inputs: torch.Tensor) -> None:
    """Run the model until ``StopForward`` (raised by ``capture_residuals(stop_after_last=True)``)."""
    try:
        with torch.inference_mode():
            model(**inputs, use_cache=False)
    except StopForward:
        pass


Pooling = Literal["last", "mean"]
PoolingRule = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
_MAX_PENDING_BATCHES = 32


class SameTokenError(ValueError):
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


POOLINGS: dict[str, PoolingRule] = {"last": pool_last, "mean": pool_mean}


def encode_texts(tokenizer: object, texts: Sequence[str], *, chat_template: bool = False,
                 max_length: int | None = None) -> list[list[int]]:
    """Token ids per text, as the model will see them: special tokens added by the tokenizer (or the chat
    template, rendered as one user turn), cut to the first ``max_length`` tokens when given."""
    if chat_template:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("chat_template=True but the tokenizer has no chat template: drop --chat-template")
        texts = [tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False)
                 for text in texts]
    if not texts:
        return []
    encoded = tokenizer(list(texts), add_special_tokens=not chat_template, truncation=max_length is not None,
                        max_length=max_length)
    return [list(ids) for ids in encoded["input_ids"]]


def check_pooled_tokens(tokenizer: object, token_ids: Sequence[Sequence[int]], pooling: str) -> None:
    """Refuse texts with no tokens, and ``last`` pooling that would read the same token id in every text."""
    empty = [index for index, ids in enumerate(token_ids) if not ids]
    if empty:
        raise ValueError(f"text(s) at position(s) {empty[:10]} have no tokens: drop empty texts")
    last_ids = {ids[-1] for ids in token_ids}
    if pooling == "last" and len(token_ids) > 1 and len(last_ids) == 1:
        token_id = last_ids.pop()
        token = tokenizer.decode([token_id])
        raise SameTokenError(f"all {len(token_ids)} texts end in the same token {token!r} (id {token_id}), so "
                             "pooling 'last' would read it every time: drop --chat-template or use --pooling mean")


def batch_inputs(batch: Sequence[Sequence[int]], pad_id: int, side: str, device: torch.device) -> dict[str, torch.Tensor]:
    """Pad on the tokenizer's side; position ids count real tokens only, so padding never shifts a text."""
    width = max(len(ids) for ids in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, ids in enumerate(batch):
        span = slice(width - len(ids), width) if side == "left" else slice(0, len(ids))
        input_ids[row, span] = torch.tensor(ids, dtype=torch.long)
        mask[row, span] = 1
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device), "position_ids": positions.to(device)}


def forward_pooled(loaded: LoadedModel, batch: Sequence[Sequence[int]], layers: Sequence[int],
                   pooling: str = "last", skip_tokens: int = 0) -> torch.Tensor:
    """One truncated forward over token-id lists -> pooled ``[B, n_layers, hidden]`` fp32 on the CPU."""
    tokenizer = loaded.tokenizer
    inputs = batch_inputs(batch, tokenizer.pad_token_id, tokenizer.padding_side, loaded.device)
    rule, slot = POOLINGS[pooling], {layer: index for index, layer in enumerate(layers)}
    pooled = torch.empty((len(batch), len(layers), loaded.hidden_size), dtype=torch.float32)

    def on_residual(layer: int, hidden: torch.Tensor) -> None:
        pooled[:, slot[layer]] = rule(hidden, inputs["attention_mask"], skip_tokens).cpu()

    with capture_residuals(loaded.model, layers, on_residual, stop_after_last=True):
        truncated_forward(loaded.model, **inputs)
    return pooled


def pooling_problems(pooling: str, skip_tokens: int, batch_size: int, max_length: int | None) -> list[str]:
    """What is wrong with these pooling arguments (empty when nothing), for callers that collect problems."""
    problems = []
    if pooling not in POOLINGS:
        problems.append(f"pooling {pooling!r} is not one of {', '.join(POOLINGS)}")
    if skip_tokens < 0 or (skip_tokens and pooling != "mean"):
        problems.append(f"skip_tokens {skip_tokens} must be >= 0, and 0 unless pooling is 'mean'")
    if batch_size < 1:
        problems.append(f"batch_size {batch_size} must be >= 1")
    if max_length is not None and max_length < 1:
        problems.append(f"max_length {max_length} must be >= 1 (or None for no limit)")
    return problems


class _PooledStream:
    """Fixed batches of the sorted texts, filled from the cache or by forwarding the misses ``batch_size`` at a
    time; a resumed run thus forwards exactly the batches a fresh run would, and sums match to the bit."""

    def __init__(self, loaded: LoadedModel, texts: Sequence[str], token_ids: list[list[int]], layers: list[int],
                 pooling: str, skip_tokens: int, cache: ActivationCache | None, key: CacheKey, meter: _Meter) -> None:
        self.loaded, self.texts, self.token_ids, self.layers = loaded, texts, token_ids, layers
        self.pooling, self.skip_tokens, self.cache, self.key, self.meter = pooling, skip_tokens, cache, key, meter
        self.pending: deque[tuple[list[int], list[torch.Tensor | None]]] = deque()
        self.misses: list[tuple[list[torch.Tensor | None], int, int]] = []

    def add(self, indices: list[int]) -> None:
        """Queue one output batch: cached rows now, misses for the next forwards."""
        rows: list[torch.Tensor | None] = [None] * len(indices)
        if self.cache is not None:
            rows = self.cache.lookup(self.key, [text_sha256(self.texts[index]) for index in indices])
        self.pending.append((indices, rows))
        self.misses += [(rows, slot, index) for slot, (index, row) in enumerate(zip(indices, rows)) if row is None]
        self.meter.update(len(indices) - sum(row is None for row in rows), 0)

    def forward(self, count: int) -> None:
        """Forward the first ``count`` misses as one batch, store them in the cache, fill their rows."""
        todo, self.misses[:count] = self.misses[:count], []
        batch = [self.token_ids[index] for _, _, index in todo]
        pooled = forward_pooled(self.loaded, batch, self.layers, self.pooling, self.skip_tokens)
        if self.cache is not None:
            self.cache.store(self.key, [text_sha256(self.texts[index]) for _, _, index in todo], pooled)
        for (rows, slot, _), row in zip(todo, pooled):
            rows[slot] = row
        self.meter.update(len(todo), sum(len(ids) for ids in batch))

    def ready(self) -> Iterator[tuple[list[int], torch.Tensor]]:
        """Complete batches from the front, in order (stacked into fresh tensors)."""
        while self.pending and all(row is not None for row in self.pending[0][1]):
            indices, rows = self.pending.popleft()
            yield indices, torch.stack(rows)


def iter_pooled(
    loaded: LoadedModel,
    texts: Sequence[str],
    layers: Sequence[int],
    *,
    pooling: Pooling = "last",
    skip_tokens: int = 0,
    chat_template: bool = False,
    max_length: int | None = None,
    batch_size: int = 8,
    cache: ActivationCache | None = None,
    progress: bool = False,
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Stream ``(indices into texts, pooled [B, n_layers, hidden] fp32)`` over distinct texts.

    Batches come in a fixed order (by token count, then text) with ``batch_size`` texts each, whatever the
    input order and whichever rows came from ``cache``, so sums taken batch by batch are reproducible to the
    bit. Texts missing from the cache are forwarded ``batch_size`` at a time and stored as each batch completes.
    """
    problems = pooling_problems(pooling, skip_tokens, batch_size, max_length)
    if len(set(texts)) != len(texts):
        problems.append("texts must be distinct: deduplicate them first (pool_texts does)")
    if problems:
        raise ValueError("; ".join(problems))
    layers = check_layers(list(layers), loaded.n_layers)
    token_ids = encode_texts(loaded.tokenizer, texts, chat_template=chat_template, max_length=max_length)
    check_context_length(loaded, token_ids, texts, f"shorten them or pass --max-length {loaded.context_length}")
    check_pooled_tokens(loaded.tokenizer, token_ids, pooling)
    order = sorted(range(len(texts)), key=lambda index: (len(token_ids[index]), texts[index]))
    key = CacheKey(loaded.fingerprint, tuple(layers), pooling, skip_tokens, chat_template, loaded.dtype, max_length)
    meter = _Meter(len(texts), progress)
    stream = _PooledStream(loaded, texts, token_ids, layers, pooling, skip_tokens, cache, key, meter)
    try:
        for start in range(0, len(order), batch_size):
            stream.add(order[start:start + batch_size])
            while len(stream.misses) >= batch_size or (stream.misses and len(stream.pending) > _MAX_PENDING_BATCHES):
                stream.forward(batch_size)
            yield from stream.ready()
        while stream.misses:
            stream.forward(batch_size)
        yield from stream.ready()
    finally:
        meter.close()


class _Meter:
    """A tqdm bar over texts with tokens/s of the forward passes; silent unless asked and on a TTY."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = tqdm(total=total, unit="text", desc="pooling", disable=None if enabled else True, leave=False)
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
    *,
    pooling: Pooling = "last",
    skip_tokens: int = 0,
    chat_template: bool = False,
    batch_size: int = 8,
    max_length: int | None = None,
    cache: ActivationCache | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Pooled activations ``[len(texts), len(layers), hidden]`` fp32 in input order (one forward per unique text)."""
    unique = list(dict.fromkeys(texts))
    out = torch.empty((len(unique), len(layers), loaded.hidden_size), dtype=torch.float32)
    for indices, pooled in iter_pooled(loaded, unique, layers, pooling=pooling, skip_tokens=skip_tokens,
                                       chat_template=chat_template, max_length=max_length,
                                       batch_size=batch_size, cache=cache, progress=progress):
        out[indices] = pooled
    position = {text: index for index, text in enumerate(unique)}
    return out[[position[text] for text in texts]]
