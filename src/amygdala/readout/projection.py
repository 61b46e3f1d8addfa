"""Reading an artifact's concepts out of a model's residual stream, token by token, and steering with them.

- ``project_readout`` is the one projection that the offline ``amygdala readout`` and the server share: the
  raw dot products of a residual with each concept's unit vector, optionally z-scored with the manifest's
  calibration, ``(x - mean) / std``.
- ``project_pooled`` applies it to pooled activations ``[texts, layers, hidden]`` (evaluation).
- ``combine_layers`` (offline only; the server keeps streaming one readout per layer) turns per-layer z-scores
  ``[..., layers, concepts]`` into one multi-layer readout ``[..., concepts]``: ``mean``, the average of the
  layers' z-scores (each layer calibrated on the training texts, so the layers share one scale).
- ``attach`` hooks the artifact's layers (``layer_<idx>`` = output of decoder block idx = HF
  ``hidden_states[idx + 1]``) through ``capture.capture_residuals``, the capture training uses, and keeps
  the readout of the last forward pass. The offline readout is one forward pass over a whole text; generation
  (``amygdala.readout.generation``) runs one forward pass per sampled token, so a generated token's readout is the
  residual at the position that produced it (generated token k, 0-based: position ``prompt_len - 1 + k``).
- Steering adds ``alpha * norm_l * unit_l`` for each steered concept to the residual leaving each steered layer
  l, before the readout reads it, at every position of every forward pass. ``norm_l`` is measured on the
  prompt: the mean L2 norm of the residual arriving at that hook over the prompt's tokens, leaving out the first
  token when there are more (its norm is an attention-sink outlier in most models), taken in the first forward
  pass after ``attach`` or ``restart`` and reused for every generated token.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast

import torch
from torch import nn
from tqdm import tqdm

from amygdala.artifact import ReadoutArtifact, check_fits_model
from amygdala.errors import AmygdalaError
from amygdala.forward.capture import capture_residuals, encode_texts, residual_from_output, truncated_forward
from amygdala.forward.models import LoadedModel, check_context_length
from amygdala.forward.pooling import PoolingSpec

logger = logging.getLogger(__name__)
_UNIT_TOLERANCE = 1e-2
#: Largest |alpha| a steered concept may have: alpha scales the prompt's mean residual norm, so 100 already adds a
#: hundred residuals' worth; beyond it (or a NaN/inf) the forward overflows into NaN readouts.
MAX_STEER_ALPHA = 100.0


LayerCombine = Literal["mean"]
LAYER_COMBINES: tuple[LayerCombine, ...] = ("mean",)


class ReadoutError(AmygdalaError):
    """A readout request does not fit its artifact (z-score without calibration, unknown steered concept...)."""


@dataclass(frozen=True)
class ReadoutOptions:
    """How residuals become readouts, and the steering applied while they are read."""

    #: Z-score every raw projection with the manifest calibration, ``(x - mean) / std`` per layer and concept.
    #: The calibration describes pooled training texts; single tokens are put on that scale, not standardised.
    zscore: bool = False
    #: Concept -> alpha: add ``alpha * (mean residual norm on the prompt) * unit vector`` at each steered layer;
    #: alpha must be finite, within +-``MAX_STEER_ALPHA``.
    steer: Mapping[str, float] = field(default_factory=dict)
    #: The layers that steer, a subset of the artifact's; ``None`` steers at every hooked layer.
    steer_layers: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Projector:
    """An artifact's unit vectors ``[n_layers, n_concepts, hidden]`` and calibration ``[n_layers, n_concepts]``."""

    concepts: tuple[str, ...]
    layers: tuple[int, ...]
    vectors: torch.Tensor
    mean: torch.Tensor | None
    std: torch.Tensor | None


@dataclass(frozen=True)
class TextReadout:
    """One text's tokens and their readouts ``values[token, layer, concept]`` (fp32, on the CPU)."""

    token_ids: tuple[int, ...]
    tokens: tuple[str, ...]
    values: torch.Tensor


def projector_for(artifact: ReadoutArtifact, device: torch.device | str = "cpu") -> Projector:
    """The artifact's vectors as one fp32 tensor on ``device``; refuses vectors that are not unit length."""
    vectors = artifact.stacked().to(device)
    norms = vectors.norm(dim=-1)
    if not bool(((norms - 1).abs() <= _UNIT_TOLERANCE).all()):
        raise ReadoutError(f"artifact vectors must be unit length (found norms {norms.min():.4g}..{norms.max():.4g}); "
                           "retrain or normalise each layer's rows")
    calibration = artifact.calibration
    mean = std = None
    if calibration is not None:
        mean = torch.stack([calibration.mean[layer] for layer in artifact.layers]).to(device)
        std = torch.stack([calibration.std[layer] for layer in artifact.layers]).to(device)
    return Projector(artifact.concepts, artifact.layers, vectors, mean, std)


def project_readout(residual: torch.Tensor, projector: Projector, position: int, *, zscore: bool) -> torch.Tensor:
    """Readout ``[..., n_concepts]`` of residuals ``[..., hidden]`` at the projector's ``position``-th layer.

    Raw dot products with the unit vectors in fp32, or with ``zscore`` ``(x - mean) / std`` from the calibration.
    Offline readout, generation and the server all call this function.
    """
    raw = residual.float() @ projector.vectors[position].T
    return calibrate_readout(raw, projector, position) if zscore else raw


def calibrate_readout(raw: torch.Tensor, projector: Projector, position: int) -> torch.Tensor:
    """z-scores ``(raw - mean) / std`` of raw readouts ``[..., n_concepts]`` at the projector's ``position``-th layer
    (the vLLM plugin projects inside the compiled graph and calibrates the few rows that leave the device)."""
    if projector.mean is None or projector.std is None:
        raise ReadoutError("z-scores need a manifest with calibration; this artifact has none: drop zscore")
    return (raw - projector.mean[position]) / projector.std[position]


def project_pooled(pooled: torch.Tensor, projector: Projector, *, zscore: bool) -> torch.Tensor:
    """``project_readout`` of pooled activations ``[n, n_layers, hidden]`` (layers as the projector's) at every
    layer: ``[n, n_layers, n_concepts]``."""
    return torch.stack([project_readout(pooled[:, position], projector, position, zscore=zscore)
                        for position in range(len(projector.layers))], dim=1)


def calibrated(projector: Projector, pooled: torch.Tensor) -> Projector:
    """``projector`` with the mean and (population) std of its raw projections of ``pooled [n, n_layers, hidden]``
    as calibration, when it carries none (evaluation's fallback, cross-validation's per-fold z-scores)."""
    if projector.mean is not None and projector.std is not None:
        return projector
    raw = project_pooled(pooled, projector, zscore=False)
    return replace(projector, mean=raw.mean(dim=0), std=raw.std(dim=0, correction=0))


def combine_layers(zscores: torch.Tensor, rule: LayerCombine = "mean") -> torch.Tensor:
    """One readout per concept from per-layer z-scores ``[..., n_layers, n_concepts]`` -> ``[..., n_concepts]``:
    with ``mean``, their average over the layers."""
    if rule not in LAYER_COMBINES:
        raise ReadoutError(f"layer combination {rule!r} is unknown: use one of {', '.join(LAYER_COMBINES)}")
    return zscores.mean(dim=-2)


def parse_steer(specs: Sequence[str]) -> dict[str, float]:
    """``["joy=4", "fear=-2"]`` -> ``{"joy": 4.0, "fear": -2.0}``; every malformed spec is named at once."""
    steer: dict[str, float] = {}
    bad = []
    for spec in specs:
        concept, sep, alpha = spec.partition("=")
        try:
            value = float(alpha)
        except ValueError:
            value = float("nan")
        if not sep or not concept.strip() or value != value or abs(value) == float("inf"):
            bad.append(spec)
        else:
            steer[concept.strip()] = value
    if bad:
        raise ReadoutError(f"--steer {', '.join(map(repr, bad))} is malformed: write concept=alpha, e.g. joy=4")
    return steer


def check_options(artifact: ReadoutArtifact, options: ReadoutOptions) -> None:
    """Collect every way ``options`` do not fit ``artifact``, then raise one ReadoutError."""
    problems = []
    if options.zscore and artifact.calibration is None:
        problems.append("zscore needs a manifest with calibration and this artifact has none (drop zscore)")
    if options.zscore and artifact.calibration is not None and any(
            bool((artifact.calibration.std[layer] <= 0).any()) for layer in artifact.layers):
        problems.append("zscore needs positive calibration std and the manifest has zeros (retrain)")
    if unknown := [concept for concept in options.steer if concept not in artifact.concepts]:
        problems.append(f"steered concept(s) {', '.join(unknown)} not in the artifact "
                        f"(it has {', '.join(artifact.concepts[:12])}{'...' if len(artifact.concepts) > 12 else ''})")
    if bad_alphas := [f"{concept}={alpha!r}" for concept, alpha in options.steer.items()
                      if not abs(alpha) <= MAX_STEER_ALPHA]:  # NaN fails this too
        problems.append(f"steer alpha(s) {', '.join(bad_alphas)} must be finite, within +-{MAX_STEER_ALPHA:g}")
    if options.steer_layers is not None and (bad := sorted(set(options.steer_layers) - set(artifact.layers))):
        problems.append(f"steer layers {bad} are not hooked layers of the artifact ({list(artifact.layers)})")
    if problems:
        raise ReadoutError("readout options: " + "; ".join(problems))


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
