"""What the train benchmarks time: best-of wall-clock runs, and the bare truncated forward ``train`` is compared to."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from amygdala.forward.batching import Batching, padded_tokens, plan_batches
from amygdala.forward.capture import batch_inputs, capture_residuals, encode_texts, truncated_forward
from amygdala.forward.models import LoadedModel

_T = TypeVar("_T")


def log(message: str) -> None:
    print(f"[bench train] {message}", file=sys.stderr, flush=True)


class Timing:
    """Best (least) wall-clock and process-CPU seconds over repeated runs: other load only ever adds time."""

    def __init__(self) -> None:
        self.wall, self.cpu = float("inf"), float("inf")

    def run(self, action: Callable[[], _T]) -> _T:
        wall, cpu = time.perf_counter(), time.process_time()
        result = action()
        self.wall = min(self.wall, time.perf_counter() - wall)
        self.cpu = min(self.cpu, time.process_time() - cpu)
        return result


@dataclass(frozen=True)
class BareForward:
    """The same truncated forwards ``train`` runs (pre-tokenized, the same length-sorted batches), capturing nothing."""

    run: Callable[[], None]
    n_batches: int
    padded_tokens: int


def bare_forward(loaded: LoadedModel, texts: Sequence[str], layers: Sequence[int], batch_size: int | None,
                 batch_tokens: int | None = None) -> BareForward:
    tokenizer: Any = loaded.tokenizer
    ids = encode_texts(tokenizer, texts)
    order = sorted(range(len(texts)), key=lambda index: (len(ids[index]), texts[index]))
    batching = Batching(batch_size, batch_tokens).for_device(loaded.device.type)
    plan = plan_batches(order, [len(row) for row in ids], batching)
    batches = [batch_inputs([ids[index] for index in batch], tokenizer.pad_token_id, tokenizer.padding_side,
                            loaded.device) for batch in plan]

    def run() -> None:
        with capture_residuals(loaded.model, layers, lambda _layer, _hidden: None, stop_after_last=True):
            for inputs in batches:
                truncated_forward(loaded.model, **inputs)

    return BareForward(run, len(plan), padded_tokens(plan, [len(row) for row in ids]))


