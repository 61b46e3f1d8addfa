"""Token-by-token generation with a KV cache, greedy or sampled, reading out every step.

Each step is one forward pass; the token it samples carries the readout of that pass's last position, so
generated token k (0-based) reads the residual at position ``prompt_len - 1 + k``, exactly what an offline
readout of the prompt plus the generated tokens gives at that position.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from amygdala.errors import AmygdalaError
from amygdala.forward.models import LoadedModel
from amygdala.readout.attach import AttachedReadout

FinishReason = Literal["stop", "length"]


class GenerationError(AmygdalaError):
    """Sampling options that cannot work: names the option, the value and the allowed range."""


@dataclass(frozen=True)
class SamplingOptions:
    """How the next token is chosen and when generation ends."""

    #: Most tokens to generate (the stop token, if sampled, is one of them).
    max_tokens: int = 16
    #: 0 picks the most likely token (greedy); above 0 samples from softmax(logits / temperature).
    temperature: float = 0.0
    #: Nucleus sampling: keep the smallest set of likeliest tokens whose probability reaches top_p.
    top_p: float = 1.0
    #: Seed of this generation's own random generator; None draws a fresh one.
    seed: int | None = None
    #: Strings that end the text; the text is cut before the first one, which is never released.
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class GenerationStep:
    """One generated token, the text it releases and the readout of the forward pass that produced it."""

    token_id: int
    #: Newly released text; held back (``""``) while it may be the start of a stop string or a partial character.
    text: str
    #: ``[n_layers, n_concepts]`` fp32 on the CPU, or None when no readout is attached.
    readout: torch.Tensor | None
    finish_reason: FinishReason | None


def check_sampling(options: SamplingOptions) -> None:
    problems = []
    if options.max_tokens < 1:
        problems.append(f"max_tokens {options.max_tokens} must be at least 1")
    if not 0 <= options.temperature <= 100:
        problems.append(f"temperature {options.temperature} must be in 0..100")
    if not 0 < options.top_p <= 1:
        problems.append(f"top_p {options.top_p} must be in (0, 1]")
    if any(not stop for stop in options.stop):
        problems.append("stop strings must not be empty")
    if problems:
        raise GenerationError("sampling options: " + "; ".join(problems))


def stop_token_ids(loaded: LoadedModel) -> set[int]:
    """The model's end-of-sequence ids: the generation config's and the tokenizer's."""
    ids: set[int] = set()
    configured = getattr(getattr(loaded.model, "generation_config", None), "eos_token_id", None)
    for value in (configured if isinstance(configured, list) else [configured]):
        if value is not None:
            ids.add(int(value))
    tokenizer: Any = loaded.tokenizer
    if getattr(tokenizer, "eos_token_id", None) is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids


def next_token(logits: torch.Tensor, options: SamplingOptions, generator: torch.Generator | None) -> int:
    """Pick one token from ``logits[vocab]``: argmax at temperature 0, else nucleus sampling."""
    if options.temperature == 0:
        return int(logits.argmax())
    # Shifted by the max and divided in fp64: a tiny temperature (1e-308 underflows to 0 in fp32) sends every other
    # logit to -inf and keeps the best at 0, the greedy limit, instead of 0/0 = NaN probabilities.
    shifted = logits.double() - logits.double().max()
    probs = torch.softmax(shifted / options.temperature, dim=-1).float()
    if options.top_p < 1:
        sorted_probs, order = probs.sort(descending=True)
        keep = sorted_probs.cumsum(-1) - sorted_probs < options.top_p
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
    return int(torch.multinomial(probs, 1, generator=generator))


def _held_back(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters of ``text`` may still grow into a stop string (or finish a character)."""
    if text.endswith("\ufffd"):
        return len(text) - len(text.rstrip("\ufffd"))
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest


class _TextReleaser:
    """Decodes the generated ids and releases text once no stop string can still begin in it."""

    def __init__(self, tokenizer: Any, stops: Sequence[str]) -> None:
        self.tokenizer, self.stops = tokenizer, tuple(stops)
        self.ids: list[int] = []
        self.released = 0

    def push(self, token_id: int, *, final: bool) -> tuple[str, bool]:
        """Add a token; return (text to release now, whether a stop string was found)."""
        self.ids.append(token_id)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        hits = [index for stop in self.stops if (index := text.find(stop, max(0, self.released - len(stop)))) >= 0]
        if hits:
            end, stopped = min(hits), True
        else:
            end, stopped = (len(text) if final else len(text) - _held_back(text, self.stops)), False
        end = max(end, self.released)
        piece, self.released = text[self.released:end], end
        return piece, stopped


def _generator(loaded: LoadedModel, options: SamplingOptions) -> torch.Generator | None:
    """This generation's own random generator (seeded from ``options.seed``); None when greedy."""
    if options.temperature == 0:
        return None
    generator = torch.Generator(device=loaded.device)
    generator.manual_seed(options.seed if options.seed is not None else int(torch.seed()))
    return generator


def generate(
    loaded: LoadedModel,
    prompt_ids: Sequence[int],
    options: SamplingOptions,
    *,
    reader: AttachedReadout | None = None,
    cancelled: Callable[[], bool] = lambda: False,
) -> Iterator[GenerationStep]:
    """Yield one step per generated token; ``reader`` (from ``readout.attach``) must be attached to ``loaded``.

    ``cancelled`` is checked before every forward pass; when it turns true, generation ends without a last step.
    """
    from transformers import DynamicCache

    check_sampling(options)
    if not prompt_ids:
        raise GenerationError("prompt is empty: give at least one token")
    generator = _generator(loaded, options)
    if reader is not None:
        reader.restart()
    eos, releaser = stop_token_ids(loaded), _TextReleaser(loaded.tokenizer, options.stop)
    model: Any = loaded.model
    cache = DynamicCache(config=model.config)
    step_ids = torch.tensor([list(prompt_ids)], device=loaded.device)
    for count in range(1, options.max_tokens + 1):
        if cancelled():
            return
        with torch.inference_mode():
            output = model(input_ids=step_ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        readout = reader.take()[-1].cpu() if reader is not None and reader.collecting else None
        token = next_token(output.logits[0, -1], options, generator)
        ended = token in eos or count == options.max_tokens
        text, stopped = releaser.push(token, final=ended)
        finish: FinishReason | None = "stop" if stopped or token in eos else ("length" if ended else None)
        yield GenerationStep(token, text, readout, finish)
        if finish is not None:
            return
        step_ids = torch.tensor([[token]], device=loaded.device)
