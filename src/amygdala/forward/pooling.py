"""One vector per text and layer: the pooling spec and the pooling rules (the batched forward is ``pooled``).

``PoolingSpec`` is everything besides the text and the model that decides a pooled vector: the rule, the
leading tokens it skips, the chat template and the length cut. Training, evaluation, layer selection, the
activation cache key and the offline readout all take this one spec, and the artifact records it.

Rules (``POOLINGS``), computed in fp32 whatever the forward dtype:

- ``last``: the hidden state of the last non-pad token, found from the attention mask (left or right padding).
- ``mean``: the mean over non-pad tokens after skipping the first ``skip_tokens`` of them. A BOS token the
  tokenizer adds (Gemma adds one, SmolLM2 does not) is a real token and counts: ``skip_tokens=1`` drops it.
  A text with no more than ``skip_tokens`` tokens keeps its last token.
- ``mean_last``: ``(1 - LAST_WEIGHT)`` times ``mean`` (same ``skip_tokens``) plus ``LAST_WEIGHT`` times ``last``.
  Both parts are per-token readouts averaged with fixed weights, so the pooled readout still equals the readout
  of the pooled residual.

The default is ``mean_last`` with the BOS skipped: the README's method study gives the paired figures that chose
it and the weight (``benchmarks/study_methods.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from amygdala.errors import AmygdalaError

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
