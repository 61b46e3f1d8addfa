"""Projecting residuals on an artifact's concept vectors: the one projection every readout shares, and the
readout and steering options.

- ``project_readout`` is the one projection that the offline ``amygdala readout`` and the server share: the
  raw dot products of a residual with each concept's unit vector, optionally z-scored with the manifest's
  calibration by ``readout.scale.zscore``.
- ``project_pooled`` applies it to pooled activations ``[texts, layers, hidden]`` (evaluation).
- ``combine_layers`` (offline only; the server keeps streaming one readout per layer) turns per-layer z-scores
  ``[..., layers, concepts]`` into one multi-layer readout ``[..., concepts]``: ``mean``, the average of the
  layers' z-scores (each layer calibrated on the training texts, so the layers share one scale).
- ``attach`` (hooks on a live model, and steering) reads out through ``project_readout``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import torch

from amygdala.artifact import ReadoutArtifact
from amygdala.errors import AmygdalaError
from amygdala.readout.scale import zscore

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
    """z-scores of raw readouts ``[..., n_concepts]`` at the projector's ``position``-th layer, by
    ``readout.scale.zscore``, the rule every view shares (the vLLM plugin projects inside the compiled graph and
    calibrates the few rows that leave the device)."""
    if projector.mean is None or projector.std is None:
        raise ReadoutError("z-scores need a manifest with calibration; this artifact has none: drop zscore")
    return zscore(raw, projector.mean[position], projector.std[position])


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


