"""One vector per text and layer: the pooling spec, the pooling rules, and the batched pooled forward.

``PoolingSpec`` is everything besides the text and the model that decides a pooled vector: the rule, the
leading tokens it skips, the chat template and the length cut. Training, evaluation, layer selection, the
activation cache key and the offline readout all take this one spec, and the artifact records it.

Rules (``POOLINGS``), computed in fp32 whatever the forward dtype:

- ``last``: the hidden state of the last non-pad token, found from the attention mask (left or right padding).
- ``mean``: the mean over non-pad tokens after skipping the first ``skip_tokens`` of them. A BOS token the
  tokenizer adds (Gemma adds one, SmolLM2 does not) is a real token and counts: ``skip_tokens=1`` drops it.
  A text with no more than ``skip_tokens`` tokens keeps its last token.

The default is the measured best (``mean`` with the BOS skipped: held-out AUROC 0.843 vs 0.655 for the last
token on the bundled sample, benchmarks/study_methods.py). ``pool_texts`` returns all pooled vectors at once;
``iter_pooled`` streams them batch by batch (one forward per unique text, length-sorted batches, the forward
stopped after the deepest target layer), optionally through an ``ActivationCache``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from tqdm import tqdm

from amygdala.activation_cache import ActivationCache, CacheKey, text_sha256
from amygdala.capture import batch_inputs, capture_residuals, check_layers, encode_texts, truncated_forward
from amygdala.errors import AmygdalaError
from amygdala.models import LoadedModel, check_context_length

Pooling = Literal["last", "mean"]
PoolingRule = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
_MAX_PENDING_BATCHES = 32


def default_skip_tokens(pooling: str) -> int:
    """1 for ``mean`` (the BOS residual is an outlier that swamps short texts), 0 otherwise."""
    return 1 if pooling == "mean" else 0


@dataclass(frozen=True)
class PoolingSpec:
    """How each text becomes one vector per layer; the artifact records the spec it was trained with."""

    pooling: Pooling = "mean"
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
        if self.skip < 0 or (self.skip and self.pooling != "mean"):
            problems.append(f"skip_tokens {self.skip} must be >= 0, and 0 unless pooling is 'mean'")
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


POOLINGS: dict[str, PoolingRule] = {"last": pool_last, "mean": pool_mean}


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
    """One truncated forward over token-id lists -> pooled ``[B, n_layers, hidden]`` fp32 on the CPU."""
    tokenizer: Any = loaded.tokenizer
    inputs = batch_inputs(batch, tokenizer.pad_token_id, tokenizer.padding_side, loaded.device)
    rule, slot = POOLINGS[spec.pooling], {layer: index for index, layer in enumerate(layers)}
    pooled = torch.empty((len(batch), len(layers), loaded.hidden_size), dtype=torch.float32)

    def on_residual(layer: int, hidden: torch.Tensor) -> None:
        pooled[:, slot[layer]] = rule(hidden, inputs["attention_mask"], spec.skip).cpu()

    with capture_residuals(loaded.model, layers, on_residual, stop_after_last=True):
        truncated_forward(loaded.model, **inputs)
    return pooled


class _PooledStream:
    """Fixed batches of the sorted texts, filled from the cache or by forwarding the misses ``batch_size`` at a
    time; a resumed run thus forwards exactly the batches a fresh run would, and sums match to the bit."""

    def __init__(self, loaded: LoadedModel, texts: Sequence[str], token_ids: list[list[int]], key: CacheKey,
                 cache: ActivationCache | None, meter: _Meter) -> None:
        self.loaded, self.texts, self.token_ids, self.key, self.cache, self.meter = (
            loaded, texts, token_ids, key, cache, meter)
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
        pooled = forward_pooled(self.loaded, batch, self.key.layers, self.key.spec)
        if self.cache is not None:
            self.cache.store(self.key, [text_sha256(self.texts[index]) for _, _, index in todo], pooled)
        for (rows, slot, _), row in zip(todo, pooled):
            rows[slot] = row
        self.meter.update(len(todo), sum(len(ids) for ids in batch))

    def ready(self) -> Iterator[tuple[list[int], torch.Tensor]]:
        """Complete batches from the front, in order (stacked into fresh tensors)."""
        while self.pending and all(row is not None for row in self.pending[0][1]):
            indices, rows = self.pending.popleft()
            yield indices, torch.stack([row for row in rows if row is not None])


def _encoded(loaded: LoadedModel, texts: Sequence[str], layers: Sequence[int], spec: PoolingSpec,
             batch_size: int) -> tuple[list[int], list[list[int]]]:
    """Validate everything before any forward; returns (checked layers, token ids per text)."""
    problems = spec.problems() + ([f"batch_size {batch_size} must be >= 1"] if batch_size < 1 else [])
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
    batch_size: int = 8,
    cache: ActivationCache | None = None,
    progress: bool = False,
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Stream ``(indices into texts, pooled [B, n_layers, hidden] fp32)`` over distinct texts.

    Batches come in a fixed order (by token count, then text) with ``batch_size`` texts each, whatever the
    input order and whichever rows came from ``cache``, so sums taken batch by batch are reproducible to the
    bit. Texts missing from the cache are forwarded ``batch_size`` at a time and stored as each batch completes.
    """
    checked, token_ids = _encoded(loaded, texts, layers, spec, batch_size)
    order = sorted(range(len(texts)), key=lambda index: (len(token_ids[index]), texts[index]))
    key = CacheKey(loaded.fingerprint, tuple(checked), spec, loaded.dtype)
    meter = _Meter(len(texts), progress)
    stream = _PooledStream(loaded, texts, token_ids, key, cache, meter)
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
    spec: PoolingSpec = PoolingSpec(),
    *,
    batch_size: int = 8,
    cache: ActivationCache | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Pooled activations ``[len(texts), len(layers), hidden]`` fp32 in input order (one forward per unique text)."""
    unique = list(dict.fromkeys(texts))
    out = torch.empty((len(unique), len(layers), loaded.hidden_size), dtype=torch.float32)
    for indices, pooled in iter_pooled(loaded, unique, layers, spec, batch_size=batch_size, cache=cache,
                                       progress=progress):
        out[indices] = pooled
    position = {text: index for index, text in enumerate(unique)}
    return out[[position[text] for text in texts]]
