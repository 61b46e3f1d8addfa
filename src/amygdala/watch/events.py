"""What a watch session is made of: the readout manifest and a stream of events (turns, tokens, notices).

A live server (``stream``) and a recorded file (``record``) both produce these events; the state, the terminal
view and the recorder only consume them, so a replay goes through exactly the code a live run does.
Times are seconds on the session's clock; only their differences within a turn (tokens/s) are ever shown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from amygdala.errors import AmygdalaError
from amygdala.readout.scale import CalibrationError, CalibrationTable, calibration_from_json, spreads_every_concept

TurnKind = Literal["chat", "completion", "text"]
Level = Literal["info", "warning", "error"]
#: ``[n_layers][n_concepts]`` of one token, layers and concepts in manifest order.
Readout = tuple[tuple[float, ...], ...]


class WatchError(AmygdalaError):
    """A watch session cannot start (bad options, unreadable manifest or record): one line naming the input."""


@dataclass(frozen=True)
class Manifest:
    """What every readout lists, and how its values may be z-scored."""

    concepts: tuple[str, ...]
    layers: tuple[int, ...]
    #: Per layer, the manifest's calibration; None when the server sent none (running statistics then).
    calibration: CalibrationTable | None = None
    #: The values arrive z-scored already (vLLM with ``AMYGDALA_VLLM_ZSCORE=1``, or a record that was).
    zscored: bool = False


@dataclass(frozen=True)
class TurnStart:
    """A request begins (``restart``: a retry after a lost stream; the turn's earlier tokens are void)."""

    turn: int
    prompt: str
    kind: TurnKind
    time: float
    restart: bool = False


@dataclass(frozen=True)
class Token:
    """One generated token: its text (may be empty), id when known, and readout when the server sent one."""

    turn: int
    text: str
    token_id: int | None
    readout: Readout | None
    time: float | None


@dataclass(frozen=True)
class TurnEnd:
    turn: int
    finish_reason: str | None
    time: float | None


@dataclass(frozen=True)
class Notice:
    """A message for the person watching: a dropped stream, a skipped chunk, a missing manifest..."""

    text: str
    level: Level = "info"


Event = Manifest | TurnStart | Token | TurnEnd | Notice


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _calibration(table: object, layers: tuple[int, ...], n_concepts: int) -> CalibrationTable | None:
    """The manifest's calibration when it is whole and every std is positive, else None."""
    try:
        calibration = calibration_from_json(table, layers, n_concepts)
    except CalibrationError:
        return None
    return calibration if spreads_every_concept(calibration) else None


def manifest_from_json(data: object, source: str) -> Manifest:
    """The manifest of ``GET /v1/readout/manifest`` or of a record line; WatchError names what is wrong.
    An unusable calibration is dropped (running statistics replace it) rather than refused."""
    if not isinstance(data, dict):
        raise WatchError(f"{source}: the readout manifest is not a JSON object")
    concepts, layers = data.get("concepts"), data.get("layers")
    if not (isinstance(concepts, list) and concepts and all(isinstance(c, str) for c in concepts)):
        raise WatchError(f"{source}: the manifest's 'concepts' must be a non-empty list of names")
    if not (isinstance(layers, list) and layers and all(type(x) is int for x in layers)):  # bool is no layer
        raise WatchError(f"{source}: the manifest's 'layers' must be a non-empty list of layer indices")
    return Manifest(tuple(concepts), tuple(layers), _calibration(data.get("calibration"), tuple(layers), len(concepts)),
                    zscored=data.get("zscore") is True)


def readout_from_json(value: object, manifest: Manifest) -> Readout | None:
    """``value`` as a ``[n_layers][n_concepts]`` readout of finite numbers, or None when it is not one."""
    if not (isinstance(value, list) and len(value) == len(manifest.layers)):
        return None
    rows = []
    for row in value:
        if not (isinstance(row, list) and len(row) == len(manifest.concepts) and all(map(_is_number, row))):
            return None
        rows.append(tuple(float(x) for x in row))
    return tuple(rows)
