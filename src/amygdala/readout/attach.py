"""Hooks on a live model: the artifact's layers read out at every forward pass, and steering.

- ``attach`` hooks the artifact's layers (``layer_<idx>`` = output of decoder block idx = HF
  ``hidden_states[idx + 1]``) through ``capture.capture_residuals``, the capture training uses, and keeps
  the readout (``projection.project_readout``) of the last forward pass. The offline readout is one forward pass
  over a whole text; generation (``amygdala.readout.generation``) runs one forward pass per sampled token, so a
  generated token's readout is the residual at the position that produced it (generated token k, 0-based:
  position ``prompt_len - 1 + k``).
- Steering adds ``alpha * norm_l * unit_l`` for each steered concept to the residual leaving each steered layer
  l, before the readout reads it, at every position of every forward pass. ``norm_l`` is measured on the
  prompt: the mean L2 norm of the residual arriving at that hook over the prompt's tokens, leaving out the first
  token when there are more (its norm is an attention-sink outlier in most models), taken in the first forward
  pass after ``attach`` or ``restart`` and reused for every generated token.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any, cast

import torch
from torch import nn
from tqdm import tqdm

from amygdala.artifact import ReadoutArtifact, check_fits_model
from amygdala.forward.capture import capture_residuals, encode_texts, residual_from_output, truncated_forward
from amygdala.forward.models import LoadedModel, check_context_length
from amygdala.forward.pooling import PoolingSpec
from amygdala.readout.projection import (
    Projector,
    ReadoutError,
    ReadoutOptions,
    TextReadout,
    check_options,
    project_readout,
    projector_for,
)

logger = logging.getLogger(__name__)


def _prompt_norm(hidden: torch.Tensor) -> float:
    """Mean L2 norm over the tokens of one sequence ``[seq, hidden]``, leaving out the first when there are more."""
    tokens = hidden[1:] if hidden.shape[0] > 1 else hidden
    return float(tokens.float().norm(dim=-1).mean())


class AttachedReadout:
    """Hooks on one model's artifact layers: the readout of each forward pass, and the steering norms in use."""

    def __init__(self, projector: Projector, options: ReadoutOptions, *, collecting: bool = True) -> None:
        self.projector = projector
        self.options = options
        #: Whether readout hooks are attached (False: steering only, ``take`` has nothing to give).
        self.collecting = collecting
        self.steering_norms: dict[int, float] = {}
        self._readout: dict[int, torch.Tensor] = {}

    def take(self) -> torch.Tensor:
        """The last forward pass's readout ``[n_tokens, n_layers, n_concepts]`` (one sequence), then forget it."""
        missing = [layer for layer in self.projector.layers if layer not in self._readout]
        assert not missing, f"no readout captured for layers {missing}: was a forward pass run while attached?"
        values = torch.stack([self._readout[layer] for layer in self.projector.layers], dim=1)
        self._readout.clear()
        return values

    def restart(self) -> None:
        """A new sequence begins: steering norms are measured again on its prompt."""
        self.steering_norms.clear()
        self._readout.clear()

    def on_residual(self, layer: int, hidden: torch.Tensor) -> None:
        assert hidden.shape[0] == 1, "readout runs one sequence per forward pass"
        position = self.projector.layers.index(layer)
        self._readout[layer] = project_readout(hidden[0], self.projector, position, zscore=self.options.zscore)

    def steering_hook(self, layer: int, direction: torch.Tensor) -> Callable[[nn.Module, object, object], object]:
        """A forward hook adding ``norm * direction`` (``direction`` = sum of alpha * unit vectors) to the residual."""

        def hook(_module: nn.Module, _inputs: object, output: object) -> object:
            hidden = residual_from_output(output)
            if layer not in self.steering_norms:
                self.steering_norms[layer] = _prompt_norm(hidden[0])
            steered = hidden + (self.steering_norms[layer] * direction).to(hidden.dtype)
            return steered if isinstance(output, torch.Tensor) else (steered, *cast(tuple, output)[1:])

        return hook


def _steering_directions(projector: Projector, options: ReadoutOptions) -> dict[int, torch.Tensor]:
    layers = projector.layers if options.steer_layers is None else options.steer_layers
    directions = {}
    for layer in layers:
        vectors = projector.vectors[projector.layers.index(layer)]
        alphas = torch.zeros(len(projector.concepts), device=vectors.device)
        for concept, alpha in options.steer.items():
            alphas[projector.concepts.index(concept)] = alpha
        if bool(alphas.any()):
            directions[layer] = alphas @ vectors
    return directions


@contextmanager
def attach(
    loaded: LoadedModel,
    artifact: ReadoutArtifact,
    options: ReadoutOptions | None = None,
    *,
    collect: bool = True,
    stop_after_last: bool = False,
) -> Iterator[AttachedReadout]:
    """Hook ``artifact``'s layers of ``loaded``: steering (if any) first, then the readout (unless not ``collect``).

    With ``stop_after_last`` the deepest hooked layer ends the forward pass (see ``truncated_forward``).
    Every hook is removed on exit, also on error.
    """
    options = options or ReadoutOptions()
    check_fits_model(artifact, n_layers=loaded.n_layers, hidden_size=loaded.hidden_size, model_id=loaded.model_id)
    check_options(artifact, options)
    reader = AttachedReadout(projector_for(artifact, loaded.device), options, collecting=collect)
    with ExitStack() as stack:
        for layer, direction in _steering_directions(reader.projector, options).items():
            handle = loaded.layers[layer].register_forward_hook(reader.steering_hook(layer, direction))
            stack.callback(handle.remove)
        if collect:
            stack.enter_context(capture_residuals(loaded.model, artifact.layers, reader.on_residual,
                                                  stop_after_last=stop_after_last))
        yield reader


def read_ids(loaded: LoadedModel, artifact: ReadoutArtifact, token_ids: Sequence[int],
             options: ReadoutOptions | None = None) -> torch.Tensor:
    """Readout ``[n_tokens, n_layers, n_concepts]`` of one token sequence, in one forward pass (no KV cache)."""
    if not token_ids:
        raise ReadoutError("token_ids is empty: give at least one token")
    input_ids = torch.tensor([list(token_ids)], device=loaded.device)
    with attach(loaded, artifact, options, stop_after_last=True) as reader:
        truncated_forward(loaded.model, input_ids=input_ids)
        return reader.take().cpu()


def read_text(loaded: LoadedModel, artifact: ReadoutArtifact, text: str, options: ReadoutOptions | None = None,
              *, spec: PoolingSpec = PoolingSpec()) -> TextReadout:
    """Per-token readout of ``text``, tokenised as training tokenises it (``capture.encode_texts``: the
    tokenizer's special tokens, or one user turn of the chat template with ``spec.chat_template``; the first
    ``spec.max_length`` tokens). Pass ``artifact.pooling`` to read as the artifact was trained."""
    ids = encode_texts(loaded.tokenizer, [text], chat_template=spec.chat_template, max_length=spec.max_length)[0]
    if not ids:
        raise ReadoutError(f"text {text[:40]!r} has no tokens: drop empty texts")
    check_context_length(loaded, [ids], [text], "shorten it, or train with --max-length (readout then cuts there)")
    tokenizer: Any = loaded.tokenizer
    tokens = tuple(tokenizer.decode([token]) for token in ids)
    return TextReadout(tuple(ids), tokens, read_ids(loaded, artifact, ids, options))


def read_texts(loaded: LoadedModel, artifact: ReadoutArtifact, texts: Sequence[str],
               options: ReadoutOptions | None = None, *, spec: PoolingSpec = PoolingSpec(),
               progress: bool = False) -> list[TextReadout]:
    """``read_text`` for each text (one forward pass each, so no padding enters any readout), with a progress bar
    when asked and on a TTY."""
    warn_if_other_model(loaded, artifact)
    return [read_text(loaded, artifact, text, options, spec=spec)
            for text in tqdm(texts, desc="readout", unit="text", disable=None if progress else True, leave=False)]


def warn_if_other_model(loaded: LoadedModel, artifact: ReadoutArtifact) -> None:
    """Log a warning when the training record names a different model fingerprint than the one attached."""
    trained_on = artifact.record.model if artifact.record is not None else None
    if trained_on is not None and trained_on.fingerprint not in (None, loaded.fingerprint):
        logger.warning("artifact was trained on %s, reading out %s: the directions may not mean the same",
                       trained_on.id, loaded.model_id)
