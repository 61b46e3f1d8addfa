"""Shared by the battery's tests: artifacts whose vectors are built from Gemma's own pooled activations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch

from amygdala.artifact import Calibration, ReadoutArtifact
from amygdala.forward.models import LoadedModel
from amygdala.forward.pooled import pool_texts
from amygdala.forward.pooling import PoolingSpec

LAYER = 6
SPEC = PoolingSpec()  # the default pooling; an artifact without a record pools so too


def planted(concepts: Sequence[str], directions: Sequence[torch.Tensor], hidden: int) -> ReadoutArtifact:
    """One-layer artifact (layer ``LAYER``, no calibration: raw readouts) with the given directions, normalised."""
    vectors = torch.nn.functional.normalize(torch.stack(list(directions)).float(), dim=1)
    assert vectors.shape[1] == hidden
    return ReadoutArtifact(tuple(concepts), (LAYER,), {LAYER: vectors}, hidden)


def pooled(loaded: LoadedModel, texts: Sequence[str]) -> torch.Tensor:
    """``[n, hidden]`` pooled activations at ``LAYER``, as the checks pool them."""
    return pool_texts(loaded, list(texts), [LAYER], SPEC)[:, 0]


def regression_direction(activations: torch.Tensor, targets: Sequence[float]) -> torch.Tensor:
    """The least-squares direction whose projections of the centred ``activations`` equal the centred
    ``targets`` (n < hidden, so the fit is exact): projections then rise exactly with ``targets``."""
    x = activations.double() - activations.double().mean(dim=0)
    y = torch.tensor(list(targets), dtype=torch.float64)
    return (torch.linalg.pinv(x) @ (y - y.mean())).float()


def calibrated_on(artifact: ReadoutArtifact, activations: torch.Tensor) -> ReadoutArtifact:
    """``artifact`` with the mean and std of its raw readouts of ``activations [n, hidden]`` as its calibration,
    as ``amygdala train`` calibrates on its training texts (so readouts are z-scores, comparable across concepts)."""
    raw = activations.float() @ artifact.vectors[LAYER].T
    return replace(artifact, calibration=Calibration({LAYER: raw.mean(dim=0)}, {LAYER: raw.std(dim=0, correction=0)}))
