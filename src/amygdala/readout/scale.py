"""The readout's scale, one definition for every view: the calibration record, z-scores, running statistics,
colour strength, the palette and the token highlight.

- ``LayerCalibration`` is one layer's calibration; a manifest's ``calibration`` table (``layer_<idx>: {mean,
  std}``) is read by ``calibration_from_json`` and written by ``calibration_to_json``.
- ``zscore`` is the one z-score rule, ``(x - mean) / std`` and 0 where std is not positive. It takes floats or,
  operator for operator, tensors: ``readout.projection`` z-scores through it.
- ``RunningStats`` (Welford) stands in for a calibration when a server sends none.
- A token's colour strength is its value against a reference, clamped to 0..1: ``Z_FULL`` for z-scores, else the
  ``RAW_QUANTILE`` quantile of the positive values shown, so one outlier (the first token's norm) does not wash out
  the rest. ``token_span`` draws it as HTML, ``token_style`` in the terminal.
- ``page_constants`` are these constants for ``/ui``, which the server renders into the page: the browser
  repeats the arithmetic, never the numbers.

Concept ``c`` of a manifest always gets ``PALETTE[c % len(PALETTE)]``, so one artifact looks the same in each
view. Standard library only: the watch client and the report run without torch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from amygdala.errors import AmygdalaError
from amygdala.outputs.sanitise import html_text

PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#469990",
           "#9a6324", "#800000", "#808000", "#000075", "#fabed4", "#dcbeff", "#aaffc3")
#: Signed views (the report's rows, the page's heat strip): the colour above zero, and below.
ABOVE_COLOUR, BELOW_COLOUR = PALETTE[0], PALETTE[2]
#: A z-score this large gives a token its full colour.
Z_FULL = 3.0
#: Raw values: full colour at this quantile of the positive values shown.
RAW_QUANTILE = 0.9
#: The smallest reference a strength is measured against (no division by zero).
MIN_REFERENCE = 1e-6
#: The most opaque a token's background gets (text stays readable on it).
ALPHA_MAX = 0.8
#: Above this strength the terminal draws a token bold.
BOLD_STRENGTH = 0.5


class CalibrationError(AmygdalaError):
    """A calibration table is not ``layer_<idx>: {mean, std}`` with one finite number per concept."""


@dataclass(frozen=True)
class LayerCalibration:
    """One layer's calibration: each concept's projection mean and std over the training texts."""

    mean: tuple[float, ...]
    std: tuple[float, ...]


#: A manifest's calibration: per hooked layer, its record.
CalibrationTable = Mapping[int, LayerCalibration]


def calibration_to_json(table: CalibrationTable) -> dict[str, dict[str, list[float]]]:
    """The manifest's ``calibration`` field: ``{"layer_<idx>": {"mean": [...], "std": [...]}}`` in layer order."""
    return {f"layer_{layer}": {"mean": list(record.mean), "std": list(record.std)} for layer, record in table.items()}


def _numbers(value: object) -> list[float] | None:
    if not isinstance(value, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value):
        return None
    return [float(x) for x in value]


def _layer_problem(entry: object, n_concepts: int | None) -> str | None:
    if not isinstance(entry, dict):
        return "is missing"
    for name in ("mean", "std"):
        values = _numbers(entry.get(name))
        if values is None:
            return f"{name} is not a list of numbers"
        if n_concepts is not None and len(values) != n_concepts:
            return f"{name} has {len(values)} values, not one per concept ({n_concepts})"
        if not all(map(math.isfinite, values)):
            return f"{name} holds NaN or inf"
    return None


def calibration_from_json(data: object, layers: Sequence[int],
                          n_concepts: int | None = None) -> dict[int, LayerCalibration]:
    """The record of a manifest's ``calibration`` field for ``layers`` (with ``n_concepts`` values each, when given:
    the artifact loader counts them among its other problems); every problem is named in one CalibrationError."""
    if not isinstance(data, dict):
        raise CalibrationError("calibration must be an object of layer_<idx>: {mean, std}")
    problems = [f"layer_{layer} {problem}" for layer in layers
                if (problem := _layer_problem(data.get(f"layer_{layer}"), n_concepts)) is not None]
    if problems:
        raise CalibrationError("calibration " + "; ".join(problems))
    return {layer: LayerCalibration(tuple(map(float, data[f"layer_{layer}"]["mean"])),
                                    tuple(map(float, data[f"layer_{layer}"]["std"]))) for layer in layers}


def spreads_every_concept(table: CalibrationTable) -> bool:
    """Whether every std is positive (a zero std z-scores to 0: its concept never varied in training)."""
    return all(s > 0 for record in table.values() for s in record.std)


class _Arithmetic(Protocol):
    def __sub__(self, other: Any, /) -> Any: ...
    def __mul__(self, other: Any, /) -> Any: ...
    def __truediv__(self, other: Any, /) -> Any: ...
    def __gt__(self, other: Any, /) -> Any: ...
    def __le__(self, other: Any, /) -> Any: ...


Number = TypeVar("Number", bound=_Arithmetic)


def zscore(x: Number, mean: Number, std: Number) -> Number:
    """``(x - mean) / std``, and 0 where ``std`` is not positive. Floats, or tensors that broadcast."""
    spread = std > 0
    # Branch-free, so floats and tensors take one expression: without spread the divisor is 1 and the product 0;
    # with it, ``std * True + False`` is ``std`` exactly.
    return (x - mean) / (std * spread + (std <= 0)) * spread


def zscores(row: Sequence[float], record: LayerCalibration) -> list[float]:
    """One layer's readout ``[n_concepts]`` z-scored with that layer's record."""
    return [zscore(x, m, s) for x, m, s in zip(row, record.mean, record.std, strict=True)]


class RunningStats:
    """Mean and sample std of every readout seen, per layer and concept (Welford's online update); the record
    that z-scores a session whose server sent no calibration."""

    def __init__(self, n_layers: int, n_concepts: int) -> None:
        self.count = 0
        self.mean = [[0.0] * n_concepts for _ in range(n_layers)]
        self.m2 = [[0.0] * n_concepts for _ in range(n_layers)]

    def add(self, readout: Sequence[Sequence[float]]) -> None:
        """Take one token's readout ``[n_layers][n_concepts]``."""
        self.count += 1
        for mean, m2, row in zip(self.mean, self.m2, readout, strict=True):
            for c, x in enumerate(row):
                delta = x - mean[c]
                mean[c] += delta / self.count
                m2[c] += delta * (x - mean[c])

    def record(self, position: int) -> LayerCalibration:
        """Layer ``position``'s statistics so far; std 0 until two readouts were seen (z-scores are 0 then)."""
        n = self.count
        std = [math.sqrt(m2 / (n - 1)) if n > 1 else 0.0 for m2 in self.m2[position]]
        return LayerCalibration(tuple(self.mean[position]), tuple(std))


def strength_reference(values: Iterable[float], zscored: bool) -> float:
    """What full colour means for ``values`` (a view's top values, or magnitudes): ``Z_FULL`` for z-scores, else
    the ``RAW_QUANTILE`` quantile of the positive ones (1 when there are none)."""
    if zscored:
        return Z_FULL
    ordered = sorted(v for v in values if v > 0)
    if not ordered:
        return 1.0
    return max(ordered[min(len(ordered) - 1, int(RAW_QUANTILE * len(ordered)))], MIN_REFERENCE)


def colour_strength(value: float, reference: float) -> float:
    """``value`` against ``reference``, clamped to 0..1 (not positive: no colour)."""
    return max(0.0, min(1.0, value / max(reference, MIN_REFERENCE)))


def alpha_hex(strength: float) -> str:
    """The background's alpha byte for ``strength`` as two hex digits, rounded half up (as JavaScript rounds)."""
    return f"{math.floor(255 * ALPHA_MAX * strength + 0.5):02x}"


def concept_colour(concept: int) -> str:
    return PALETTE[concept % len(PALETTE)]


def token_style(concept: int, strength: float) -> str:
    """A rich style for a token whose top concept is ``concept`` at ``strength``: dim when not positive, the
    concept's colour, bold when strong."""
    if strength <= 0:
        return "dim"
    return f"{'bold ' if strength > BOLD_STRENGTH else ''}{concept_colour(concept)}"


def token_span(text: str, colour: str, strength: float, title: str) -> str:
    """One token as HTML: ``text`` on ``colour`` at ``strength``'s alpha, ``title`` on hover (both escaped)."""
    return (f'<span style="background:{colour}{alpha_hex(strength)}" title="{html_text(title)}">'
            f"{html_text(text)}</span>")


def page_constants() -> dict[str, Any]:
    """The constants ``/ui`` draws with, as JSON: the page takes them from the server, never from a copy."""
    return {"palette": list(PALETTE), "above": ABOVE_COLOUR, "below": BELOW_COLOUR, "z_full": Z_FULL,
            "raw_quantile": RAW_QUANTILE, "min_reference": MIN_REFERENCE, "alpha_max": ALPHA_MAX}
