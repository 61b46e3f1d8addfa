"""Residual-stream capture on decoder-layer modules with forward hooks, the truncated forward, and text encoding.

``layer_<idx>`` = the output of decoder block ``idx`` (the residual stream after it) = HF
``hidden_states[idx + 1]``. Training (pooled per text, ``amygdala.forward.pooling``) and readout (per token,
``amygdala.readout.projection``) both capture through ``capture_residuals`` and encode through
``encode_texts``, so a vector trained here reads the same tensor at run time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from amygdala.errors import AmygdalaError
from amygdala.forward.models import decoder_layers

ResidualCallback = Callable[[int, torch.Tensor], None]


class CaptureError(AmygdalaError):
    """Layers or texts that cannot be captured (a layer out of range, no chat template to apply...)."""


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
        raise CaptureError(f"{what} {bad} out of range: the model has {n_layers} layers (0..{n_layers - 1})")
    if len(set(layers)) != len(layers):
        raise CaptureError(f"{what} {list(layers)} contain duplicates")
    if not layers:
        raise CaptureError(f"{what} are empty: give at least one layer index")
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


def encode_texts(tokenizer: Any, texts: Sequence[str], *, chat_template: bool = False,
                 max_length: int | None = None) -> list[list[int]]:
    """Token ids per text, as the model will see them: special tokens added by the tokenizer (or the chat
    template, rendered as one user turn), cut to the first ``max_length`` tokens when given."""
    if chat_template:
        if not getattr(tokenizer, "chat_template", None):
            raise CaptureError("chat_template=True but the tokenizer has no chat template: drop --chat-template")
        texts = [tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False)
                 for text in texts]
    if not texts:
        return []
    encoded = tokenizer(list(texts), add_special_tokens=not chat_template, truncation=max_length is not None,
                        max_length=max_length)
    return [list(ids) for ids in encoded["input_ids"]]


def batch_inputs(batch: Sequence[Sequence[int]], pad_id: int, side: str,
                 device: torch.device) -> dict[str, torch.Tensor]:
    """Pad on the tokenizer's side; position ids count real tokens only, so padding never shifts a text."""
    width = max(len(ids) for ids in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, ids in enumerate(batch):
        span = slice(width - len(ids), width) if side == "left" else slice(0, len(ids))
        input_ids[row, span] = torch.tensor(ids, dtype=torch.long)
        mask[row, span] = 1
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    inputs = {"input_ids": input_ids, "attention_mask": mask, "position_ids": positions}
    if torch.device(device).type == "cuda":  # pinned + non-blocking: the CPU does not wait for the GPU to catch up
        return {name: tensor.pin_memory().to(device, non_blocking=True) for name, tensor in inputs.items()}
    return {name: tensor.to(device) for name, tensor in inputs.items()}
