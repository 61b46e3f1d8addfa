"""Export an artifact to other runtimes: a llama.cpp / repeng control vector (GGUF) for one concept.

The file has the layout repeng's ``ControlVector.export_gguf`` writes and llama.cpp's ``--control-vector`` reads:
GGUF architecture ``controlvector``, the strings/ints ``controlvector.model_hint`` and
``controlvector.layer_count``, and one 1-D F32 tensor ``direction.<N>`` per layer.

Layer numbering: llama.cpp adds ``strength * direction.<N>`` to the output of decoder block N (0-based; its
graph calls ``build_cvec(cur, il)`` after block ``il``), and repeng reads ``direction.<N>`` from HF
``hidden_states[N + 1]``. Both are exactly amygdala's ``layer_<N>``, so ``layer_<idx>`` is written as
``direction.<idx>`` unchanged. llama.cpp rejects ``direction.0`` (it never steers block 0), so ``layer_0`` is
left out and reported.

Each direction is ``scale`` times the concept's unit vector: llama.cpp adds it as is (times the strength given to
``--control-vector-scaled``), so a useful scale is of the order of the residual norm at that layer.
"""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amygdala.artifact import ReadoutArtifact, load_artifact
from amygdala.errors import AmygdalaError
from amygdala.outputs.atomic import atomic_write_bytes, check_output_file

logger = logging.getLogger(__name__)
CONTROL_VECTOR_ARCH = "controlvector"


class ExportError(AmygdalaError):
    """An export request does not fit its artifact (unknown concept, bad scale, no exportable layer)."""


@dataclass(frozen=True)
class ControlVectorExport:
    """What ``export_control_vector`` wrote."""

    path: Path
    concept: str
    layers: tuple[int, ...]
    skipped_layers: tuple[int, ...]
    scale: float
    hidden_size: int


def control_vector_directions(artifact: ReadoutArtifact, concept: str, scale: float) -> dict[int, np.ndarray]:
    """``{layer: scale * unit vector}`` (float32) for every layer llama.cpp can steer (all but layer 0)."""
    problems = []
    if concept not in artifact.concepts:
        shown = ", ".join(artifact.concepts[:12]) + ("..." if len(artifact.concepts) > 12 else "")
        problems.append(f"--concept {concept!r} is not in the artifact (it has {shown})")
    if not math.isfinite(scale) or scale == 0:
        problems.append(f"--scale {scale} must be a finite non-zero number (negative steers away from the concept)")
    layers = [layer for layer in artifact.layers if layer > 0]
    if not layers:
        problems.append(f"the artifact's only layer(s) {list(artifact.layers)} cannot be steered by llama.cpp, "
                        "which has no direction for block 0: retrain with --target-layers above 0")
    if problems:
        raise ExportError("export gguf: " + "; ".join(problems))
    row = artifact.concepts.index(concept)
    return {layer: (scale * artifact.vectors[layer][row].float()).numpy().astype(np.float32) for layer in layers}


def _write_gguf(path: Path, directions: dict[int, np.ndarray], model_hint: str) -> None:
    import gguf

    writer = gguf.GGUFWriter(str(path), CONTROL_VECTOR_ARCH)
    writer.add_string(f"{CONTROL_VECTOR_ARCH}.model_hint", model_hint)
    writer.add_uint32(f"{CONTROL_VECTOR_ARCH}.layer_count", len(directions))
    for layer, direction in directions.items():
        writer.add_tensor(f"direction.{layer}", direction)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _model_hint(artifact: ReadoutArtifact) -> str:
    return artifact.record.model.id if artifact.record is not None else "unknown"


def export_control_vector(
    vectors: Path,
    *,
    concept: str,
    output: Path,
    scale: float = 1.0,
    manifest: Path | None = None,
) -> ControlVectorExport:
    """Write ``concept``'s directions from ``readout.safetensors`` as a control vector GGUF, atomically."""
    check_output_file(Path(output))  # before reading anything: one line naming the path and the fix
    artifact = load_artifact(Path(vectors), manifest)
    directions = control_vector_directions(artifact, concept, scale)
    output = Path(output)
    # GGUFWriter wants a path: render into a scratch folder, then publish through the one atomic writer.
    with tempfile.TemporaryDirectory(prefix="amygdala-gguf-") as scratch:
        rendered = Path(scratch) / output.name
        _write_gguf(rendered, directions, _model_hint(artifact))
        atomic_write_bytes(output, rendered.read_bytes())
    skipped = tuple(layer for layer in artifact.layers if layer not in directions)
    if skipped:
        logger.warning("layer(s) %s left out of %s: llama.cpp cannot steer block 0", list(skipped), output)
    return ControlVectorExport(output, concept, tuple(directions), skipped, scale, artifact.hidden_size)
