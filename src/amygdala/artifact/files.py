"""``readout.safetensors`` + ``readout.json``: the artifact type, its strict loader and its atomic writer.

See ``amygdala.artifact`` for the format.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from amygdala.artifact.record import RECORD_FIELDS, record_fields, record_from_manifest, record_problems
from amygdala.artifact.types import (
    ELH_KEY,
    LAYER_CONVENTION,
    REQUIRED_MANIFEST_FIELDS,
    ArtifactError,
    Calibration,
    ReadoutArtifact,
    layer_key,
)
from amygdala.outputs.atomic import check_output_file
from amygdala.outputs.publish import publish_files, recover_interrupted
from amygdala.readout.scale import CalibrationError, calibration_from_json, calibration_to_json

_SAVE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_DERIVED_MANIFEST_FIELDS = (*REQUIRED_MANIFEST_FIELDS, "format_version", "layer_convention", "vectors_sha256",
                            "calibration")


def manifest_path_for(vectors_path: Path) -> Path:
    """``readout.safetensors`` -> ``readout.json`` beside it."""
    return Path(vectors_path).with_suffix(".json")


def elh_path_for(vectors_path: Path) -> Path:
    path = Path(vectors_path)
    return path.with_name(path.stem + ".eLH.safetensors")


def artifact_paths(vectors_path: Path, manifest_path: Path | None = None,
                   write_elh: bool = False) -> tuple[Path, ...]:
    """The files ``save_artifact`` writes, in publish order: vectors, [eLH,] manifest."""
    vectors_path = Path(vectors_path)
    manifest = Path(manifest_path) if manifest_path else manifest_path_for(vectors_path)
    return (vectors_path, *([elh_path_for(vectors_path)] if write_elh else []), manifest)


def _tensors_for_save(artifact: ReadoutArtifact) -> dict[str, torch.Tensor]:
    dtype = _SAVE_DTYPES[artifact.dtype]
    return {layer_key(layer): artifact.vectors[layer].to(dtype).contiguous() for layer in artifact.layers}


def build_manifest(artifact: ReadoutArtifact, vectors_bytes: bytes) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "concepts": list(artifact.concepts),
        "layers": list(artifact.layers),
        "hidden_size": artifact.hidden_size,
        "dtype": artifact.dtype,
        "format_version": 1,
        "layer_convention": LAYER_CONVENTION,
        "vectors_sha256": hashlib.sha256(vectors_bytes).hexdigest(),
        **(record_fields(artifact.record) if artifact.record is not None else {}),
        # Fields derived here win over stale copies among a loaded artifact's extra fields.
        **{key: value for key, value in artifact.extra.items()
           if key not in _DERIVED_MANIFEST_FIELDS and (artifact.record is None or key not in RECORD_FIELDS)},
    }
    if artifact.calibration is not None:
        manifest["calibration"] = calibration_json(artifact)
    return manifest


def calibration_json(artifact: ReadoutArtifact) -> dict[str, dict[str, list[float]]] | None:
    """The manifest's ``calibration`` table, ``layer_<idx>: {mean, std}`` (one value per concept); None without one.
    ``readout.json`` and the server's ``GET /v1/readout/manifest`` both carry it."""
    if artifact.calibration is None:
        return None
    return calibration_to_json(artifact.calibration.record(artifact.layers))


def save_artifact(
    artifact: ReadoutArtifact,
    vectors_path: Path,
    *,
    manifest_path: Path | None = None,
    write_elh: bool = False,
) -> Path:
    """Write ``readout.safetensors`` and its manifest (and the eLH file) as one set; returns the manifest path.

    Published by ``publish.publish_files``: every path is checked before anything is written, and a failure (a
    full disk, a folder at the manifest path, an old manifest that cannot be replaced, a crash) leaves the
    complete earlier artifact: never new vectors beside an old manifest.
    """
    _validate(artifact, source="artifact to save")
    paths = artifact_paths(vectors_path, manifest_path, write_elh)
    check_output_file(*paths)  # also two paths naming one file, which the dict below would merge
    vectors_bytes = save(_tensors_for_save(artifact))
    manifest = build_manifest(artifact, vectors_bytes)
    files = {paths[0]: vectors_bytes}
    if write_elh:
        elh = artifact.stacked().transpose(0, 1).to(_SAVE_DTYPES[artifact.dtype]).contiguous()
        files[paths[1]] = save({ELH_KEY: elh})
    files[paths[-1]] = (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode()
    publish_files(files, anchor=paths[0])
    return paths[-1]


def _read_manifest(manifest_path: Path) -> dict[str, Any]:
    if not manifest_path.exists():
        raise ArtifactError(f"manifest {manifest_path} does not exist: pass --manifest or put readout.json beside "
                            "the vectors")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ArtifactError(f"manifest {manifest_path} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise ArtifactError(f"manifest {manifest_path} must hold a JSON object")
    problems = [f"lacks field(s) {', '.join(missing)}"] if (
        missing := [name for name in REQUIRED_MANIFEST_FIELDS if name not in manifest]) else []
    problems += [f"field {name!r} must be {rule}, not {json.dumps(manifest[name])[:40]}"
                 for name, rule, ok in _MANIFEST_FIELD_RULES if name in manifest and not ok(manifest[name])]
    problems += record_problems(manifest)
    if problems:
        raise ArtifactError(f"manifest {manifest_path} {'; '.join(problems)}")
    return manifest


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_MANIFEST_FIELD_RULES = (
    ("concepts", "a list of strings", lambda v: isinstance(v, list) and all(isinstance(c, str) for c in v)),
    ("layers", "a list of integers", lambda v: isinstance(v, list) and all(_is_int(layer) for layer in v)),
    ("hidden_size", "a positive integer", lambda v: _is_int(v) and v > 0),
    ("dtype", "a string", lambda v: isinstance(v, str)),
    ("calibration", "an object", lambda v: v is None or isinstance(v, dict)),
)


def _check_vectors_sha256(manifest: dict[str, Any], vectors_path: Path, manifest_path: Path) -> None:
    """The manifest records the sha256 of the layer-layout file it was saved with: refuse any other bytes."""
    recorded = manifest.get("vectors_sha256")
    if recorded is None:
        return
    actual = hashlib.sha256(vectors_path.read_bytes()).hexdigest()
    if actual != recorded:
        raise ArtifactError(f"vectors file {vectors_path} does not match manifest {manifest_path} (sha256 "
                            f"{actual[:12]}... != {str(recorded)[:12]}...): the file was changed or corrupted, or "
                            f"the two come from different runs; retrain, or pass the manifest saved with it")


def _read_tensors(vectors_path: Path) -> dict[str, torch.Tensor]:
    if not Path(vectors_path).exists():
        raise ArtifactError(f"vectors file {vectors_path} does not exist")
    try:
        return load_file(str(vectors_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"vectors file {vectors_path} is not a readable safetensors file ({exc})") from None


def _vectors_from_tensors(tensors: dict[str, torch.Tensor], layers: list[int], source: str) -> dict[int, torch.Tensor]:
    """Per-layer ``[C, H]`` vectors from either layout: ``layer_<idx>.vectors`` keys or one eLH ``vectors``."""
    if set(tensors) == {ELH_KEY}:
        elh = tensors[ELH_KEY]
        if elh.dim() != 3 or elh.shape[1] != len(layers):
            raise ArtifactError(f"{source}: eLH tensor has shape {tuple(elh.shape)}, expected "
                                f"[n_concepts, {len(layers)}, hidden]")
        return {layer: elh[:, position] for position, layer in enumerate(layers)}
    expected = {layer_key(layer) for layer in layers}
    problems = []
    if missing := sorted(expected - set(tensors)):
        problems.append(f"missing key(s) {', '.join(missing)}")
    if extra := sorted(set(tensors) - expected):
        problems.append(f"unexpected key(s) {', '.join(extra)}")
    if problems:
        raise ArtifactError(f"{source}: {'; '.join(problems)} (manifest layers {layers})")
    return {layer: tensors[layer_key(layer)] for layer in layers}


def _calibration_from_manifest(manifest: dict[str, Any], layers: list[int], where: Path) -> Calibration | None:
    table = manifest.get("calibration")
    if not table:
        return None
    try:
        return Calibration.from_record(calibration_from_json(table, layers))
    except CalibrationError as exc:
        problems = str(exc).removeprefix("calibration ")
        raise ArtifactError(f"manifest {where} calibration is malformed ({problems}): expected layer_<idx>: "
                            "{mean, std}") from None


def load_artifact(vectors_path: Path, manifest_path: Path | None = None) -> ReadoutArtifact:
    """Read and validate an artifact in either layout; every shape, dtype or count mismatch is an ArtifactError."""
    vectors_path = Path(vectors_path)
    manifest_path = Path(manifest_path) if manifest_path else manifest_path_for(vectors_path)
    recover_interrupted(vectors_path)  # a save cut off by a crash: put the complete earlier artifact back first
    manifest = _read_manifest(manifest_path)
    tensors = _read_tensors(vectors_path)
    layers = list(manifest["layers"])
    if set(tensors) != {ELH_KEY}:  # the eLH file is not the one the manifest hash describes
        _check_vectors_sha256(manifest, vectors_path, manifest_path)
    vectors = _vectors_from_tensors(tensors, layers, str(vectors_path))
    record = record_from_manifest(manifest)
    known = (*_DERIVED_MANIFEST_FIELDS, *(RECORD_FIELDS if record is not None else ()))
    artifact = ReadoutArtifact(
        concepts=tuple(str(c) for c in manifest["concepts"]),
        layers=tuple(layers),
        vectors={layer: tensor.float() for layer, tensor in vectors.items()},
        hidden_size=int(manifest["hidden_size"]),
        dtype=str(manifest["dtype"]),
        calibration=_calibration_from_manifest(manifest, layers, manifest_path),
        record=record,
        extra={key: value for key, value in manifest.items() if key not in known},
    )
    _validate(artifact, source=f"{vectors_path} with {manifest_path}", stored_dtypes={
        layer: tensor.dtype for layer, tensor in vectors.items()})
    return artifact


def _validate(artifact: ReadoutArtifact, *, source: str,
              stored_dtypes: dict[int, torch.dtype] | None = None) -> None:
    """Collect every inconsistency, then raise once."""
    problems: list[str] = []
    n_concepts = len(artifact.concepts)
    if n_concepts == 0:
        problems.append("no concepts")
    if len(set(artifact.concepts)) != n_concepts:
        problems.append("duplicate concept names")
    if len(set(artifact.layers)) != len(artifact.layers) or any(layer < 0 for layer in artifact.layers):
        problems.append(f"layers {list(artifact.layers)} must be distinct non-negative indices")
    if artifact.dtype not in _SAVE_DTYPES:
        problems.append(f"dtype {artifact.dtype!r} is not one of {', '.join(_SAVE_DTYPES)}")
    for layer in artifact.layers:
        tensor = artifact.vectors.get(layer)
        if tensor is None:
            problems.append(f"no vectors for layer {layer}")
            continue
        if tuple(tensor.shape) != (n_concepts, artifact.hidden_size):
            problems.append(f"layer {layer} has shape {tuple(tensor.shape)}, "
                            f"expected [{n_concepts}, {artifact.hidden_size}]")
        elif not bool(torch.isfinite(tensor).all()):
            problems.append(f"layer {layer} holds NaN or inf")
        if stored_dtypes and artifact.dtype in _SAVE_DTYPES and stored_dtypes[layer] != _SAVE_DTYPES[artifact.dtype]:
            problems.append(f"layer {layer} is stored as {stored_dtypes[layer]}, manifest says {artifact.dtype}")
    problems += _calibration_problems(artifact)
    if problems:
        raise ArtifactError(f"{source}: " + "; ".join(problems))


def _calibration_problems(artifact: ReadoutArtifact) -> list[str]:
    if artifact.calibration is None:
        return []
    problems = []
    for layer in artifact.layers:
        for name, table in (("mean", artifact.calibration.mean), ("std", artifact.calibration.std)):
            values = table.get(layer)
            if values is None or values.shape != (len(artifact.concepts),):
                problems.append(f"calibration {name} for layer {layer} must have {len(artifact.concepts)} values")
            elif not all(math.isfinite(v) for v in values.tolist()):
                problems.append(f"calibration {name} for layer {layer} holds NaN or inf")
    return problems


def check_fits_model(artifact: ReadoutArtifact, *, n_layers: int, hidden_size: int, model_id: str) -> None:
    """Refuse an artifact whose hidden size or layers do not fit the model it is attached to."""
    problems = []
    if artifact.hidden_size != hidden_size:
        problems.append(f"hidden size {artifact.hidden_size} != the model's {hidden_size}")
    if bad := [layer for layer in artifact.layers if layer >= n_layers]:
        problems.append(f"layer(s) {bad} out of range for a model with {n_layers} layers (0..{n_layers - 1})")
    if problems:
        raise ArtifactError(f"artifact does not fit model {model_id}: " + "; ".join(problems))
