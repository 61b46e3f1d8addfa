"""The artifact's types: the vectors with their concepts and layers, the calibration, and the artifact's error."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from amygdala.artifact.record import TrainingRecord
from amygdala.errors import AmygdalaError
from amygdala.forward.pooling import PoolingSpec
from amygdala.readout.scale import CalibrationTable, LayerCalibration

LAYER_CONVENTION = "layer_<idx> is the output of decoder block idx (0-based) = HF hidden_states[idx + 1]"
ELH_KEY = "vectors"
REQUIRED_MANIFEST_FIELDS = ("concepts", "layers", "hidden_size", "dtype")


class ArtifactError(AmygdalaError):
    """An artifact or manifest is malformed or does not fit the model: lists every problem found."""


@dataclass(frozen=True)
class Calibration:
    """Per layer, the mean and std over the training texts of each concept's raw projection ``[n_concepts]``."""

    mean: dict[int, torch.Tensor]
    std: dict[int, torch.Tensor]

    @classmethod
    def from_record(cls, table: CalibrationTable) -> Calibration:
        """The tensors (fp32) of a ``readout.scale`` calibration record."""
        return cls({layer: torch.tensor(record.mean, dtype=torch.float32) for layer, record in table.items()},
                   {layer: torch.tensor(record.std, dtype=torch.float32) for layer, record in table.items()})

    def record(self, layers: tuple[int, ...]) -> dict[int, LayerCalibration]:
        """The ``readout.scale`` record of ``layers``, in that order (what the manifest's JSON carries)."""
        return {layer: LayerCalibration(tuple(self.mean[layer].tolist()), tuple(self.std[layer].tolist()))
                for layer in layers}

    def to_cpu(self) -> Calibration:
        """The same tables on the CPU (training computes them where the activations are)."""
        return Calibration({layer: t.cpu() for layer, t in self.mean.items()},
                           {layer: t.cpu() for layer, t in self.std.items()})


@dataclass(frozen=True)
class ReadoutArtifact:
    """Unit readout vectors per hooked layer, their concepts, and how they were trained (``record``)."""

    concepts: tuple[str, ...]
    layers: tuple[int, ...]
    vectors: dict[int, torch.Tensor]
    hidden_size: int
    dtype: str = "float32"
    calibration: Calibration | None = None
    record: TrainingRecord | None = None
    #: Manifest fields amygdala does not interpret, written back verbatim when the artifact is saved again.
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def pooling(self) -> PoolingSpec:
        """The pooling the vectors were trained with (the default spec when the manifest records none)."""
        return self.record.pooling if self.record is not None else PoolingSpec()

    def stacked(self) -> torch.Tensor:
        """All vectors as one fp32 tensor ``[n_layers, n_concepts, hidden_size]`` in ``layers`` order."""
        return torch.stack([self.vectors[layer].float() for layer in self.layers])

    def concept_index(self, concept: str) -> int:
        if concept not in self.concepts:
            raise ArtifactError(f"concept {concept!r} is not in the artifact; it has {', '.join(self.concepts)}")
        return self.concepts.index(concept)


def layer_key(layer: int) -> str:
    return f"layer_{layer}.vectors"
