"""Concept colours shared by every view (offline ``readout --view`` and ``--html``, ``amygdala watch``, ``/ui``).

Concept ``c`` of a manifest always gets ``PALETTE[c % len(PALETTE)]``, so one artifact looks the same in each view.
Imports nothing heavy: the watch client runs without torch.
"""

from __future__ import annotations

PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#469990",
           "#9a6324", "#800000", "#808000", "#000075", "#fabed4", "#dcbeff", "#aaffc3")


def concept_colour(concept: int) -> str:
    return PALETTE[concept % len(PALETTE)]


def token_style(concept: int, strength: float) -> str:
    """A rich style for a token whose top concept is ``concept`` at ``strength`` (its readout against a reference,
    clamped to 0..1): dim when not positive, the concept's colour, bold when strong."""
    if strength <= 0:
        return "dim"
    return f"{'bold ' if strength > 0.5 else ''}{concept_colour(concept)}"
