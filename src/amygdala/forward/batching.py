"""Forward batches: length-sorted texts cut into consecutive batches by a text count and/or a padded-token budget.

``plan_batches`` is greedy from the front of a length-sorted order: a batch takes texts while it holds at most
``batch_size`` of them and, with ``batch_tokens``, while ``len(batch) x its longest text`` (the padded tokens a
forward computes) stays within the budget. A text longer than the budget goes alone. So short texts fill a
batch and one long memory node does not shrink the batches of the others.

Greedy planning has a property the rest of amygdala relies on: planning any run of whole batches again, or the
batches a data-parallel rank takes (every N-th), gives the same batches back. A resumed run, a cache miss list
made of whole batches, and each rank of a torchrun job thus forward exactly the batches of a fresh
single-process run, so the pooled activations match to the bit on the same device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_CPU_BATCH_SIZE = 8
DEFAULT_GPU_BATCH_TOKENS = 8192


@dataclass(frozen=True)
class Batching:
    """How texts are grouped into forward passes. Both caps None: the device's default (``for_device``)."""

    batch_size: int | None = None
    """Most texts per forward pass; None: no count cap (unless both are None)."""
    batch_tokens: int | None = None
    """Most padded tokens (texts x the longest text) per forward pass; None: no token cap."""

    def problems(self) -> list[str]:
        """What is wrong with these caps (empty when nothing), for callers that collect problems."""
        problems = []
        if self.batch_size is not None and self.batch_size < 1:
            problems.append(f"batch_size {self.batch_size} must be >= 1")
        if self.batch_tokens is not None and self.batch_tokens < 1:
            problems.append(f"batch_tokens {self.batch_tokens} must be >= 1")
        return problems

    def for_device(self, device_type: str) -> Batching:
        """These caps, or the default of ``device_type`` when neither is set: a token budget on a GPU (big
        batches keep its matmul units busy), 8 texts on a CPU (no gain from more, and less memory)."""
        if self.batch_size is not None or self.batch_tokens is not None:
            return self
        if device_type == "cpu":
            return Batching(batch_size=DEFAULT_CPU_BATCH_SIZE)
        return Batching(batch_tokens=DEFAULT_GPU_BATCH_TOKENS)

    def describe(self) -> str:
        caps = [f"{self.batch_size} texts" if self.batch_size else "",
                f"{self.batch_tokens} padded tokens" if self.batch_tokens else ""]
        return "batches of at most " + " and ".join(cap for cap in caps if cap)


def plan_batches(order: Sequence[int], lengths: Sequence[int], batching: Batching) -> list[list[int]]:
    """Cut ``order`` (indices into ``lengths``, sorted by length ascending) into consecutive batches."""
    assert batching.batch_size is not None or batching.batch_tokens is not None, "resolve with for_device first"
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index in order:
        widest = max(longest, lengths[index])
        full = batching.batch_size is not None and len(current) >= batching.batch_size
        over = batching.batch_tokens is not None and (len(current) + 1) * widest > batching.batch_tokens
        if current and (full or over):
            batches.append(current)
            current, widest = [], lengths[index]
        current.append(index)
        longest = widest
    if current:
        batches.append(current)
    return batches


def padded_tokens(batches: Sequence[Sequence[int]], lengths: Sequence[int]) -> int:
    """Tokens the forwards compute, padding included."""
    return sum(len(batch) * max(lengths[index] for index in batch) for batch in batches)
