"""The readout artifact: ``readout.safetensors`` + ``readout.json``, the format a vLLM ReadoutManager loads.

- ``readout.safetensors``: one tensor per hooked layer, key ``layer_<idx>.vectors``, shape
  ``[n_concepts, hidden_size]``, and nothing else (``VLLM_READOUT_VECTORS``).
- ``readout.json``: at least ``{concepts, layers, hidden_size, dtype}`` (``VLLM_READOUT_MANIFEST``), plus
  ``format_version``, ``layer_convention``, ``vectors_sha256``, per-layer ``calibration`` (mean and std of each
  concept's projection over the training texts) and the training record: ``model`` ``{id, fingerprint,
  n_layers}``, ``training`` ``{method, pooling, skip_tokens, chat_template, forward_dtype, max_length, split,
  data_sha256, counts, n_unique_texts}`` and, when the layers were chosen automatically, ``layer_selection``
  (the validation curve). Fields amygdala does not know are kept verbatim (``ReadoutArtifact.extra``).
- The older single-tensor layout (``--format eLH``) has one key ``vectors`` shaped ``[n_concepts, n_layers, hidden]``.

``layer_<idx>`` is the output of decoder block ``idx`` (0-based) = HF ``hidden_states[idx + 1]``.

Only this package reads and writes manifest fields (``files`` the format, ``record`` the typed
``TrainingRecord``); every other module reads the typed record. Manifests written by amygdala 0.1.0 load
unchanged (pinned by ``tests/data/artifacts_0.1.0``). The package imports neither transformers nor FastAPI.
"""

from __future__ import annotations

from amygdala.artifact.files import (
    artifact_paths,
    build_manifest,
    calibration_json,
    check_fits_model,
    elh_path_for,
    load_artifact,
    manifest_path_for,
    save_artifact,
)
from amygdala.artifact.record import LayerCurve, ModelIdentity, TrainingRecord
from amygdala.artifact.types import (
    ELH_KEY,
    LAYER_CONVENTION,
    REQUIRED_MANIFEST_FIELDS,
    ArtifactError,
    Calibration,
    ReadoutArtifact,
    layer_key,
)

__all__ = [
    "ELH_KEY",
    "LAYER_CONVENTION",
    "REQUIRED_MANIFEST_FIELDS",
    "ArtifactError",
    "Calibration",
    "LayerCurve",
    "ModelIdentity",
    "ReadoutArtifact",
    "TrainingRecord",
    "artifact_paths",
    "build_manifest",
    "calibration_json",
    "check_fits_model",
    "elh_path_for",
    "layer_key",
    "load_artifact",
    "manifest_path_for",
    "save_artifact",
]
