"""Across sources: do vectors fitted on one kind of text (memory-graph nodes, synthetic stories) read the other?

With examples from both sources (``Example.source``), each cell of the table fits vectors with the artifact's
method and neutral removal on the ``train`` texts of one source (``graph``, ``synthetic``, or ``both``) and
scores the texts of one source:

- on a source the vectors were fitted on, only its ``heldout`` texts are scored (the held-out nodes or topics);
- on the other source, all its texts are scored (none of them was seen).

A text's score for a concept is its mean z over the artifact's layers, z-scored with the mean and std of the
fitting texts' projections (as ``crossval`` does); a cell's figure is the mean over concepts of the AUROC of the
concept's positives against its negatives (``metrics.auroc``), over the concepts fitted and scorable there.
The diagonal cells (graph on graph, synthetic on synthetic) are the figures by source.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from amygdala.evaluation.metrics import auroc
from amygdala.extraction.examples import SOURCES, Example
from amygdala.readout.projection import Projector, calibrated, project_pooled
from amygdala.training.directions import fit_directions
from amygdala.training.splits import LabelledTexts

TRAINED_ON = ("synthetic", "graph", "both")


@dataclass(frozen=True)
class SourceCell:
    """One (fitted on, scored on) cell: the mean AUROC over ``n_concepts`` concepts on ``n_texts`` texts, and
    each concept's AUROC."""

    trained_on: str
    scored_on: str
    mean_auroc: float
    n_concepts: int
    n_texts: int
    per_concept: dict[str, float]

    def to_json(self) -> dict[str, object]:
        return {"trained_on": self.trained_on, "scored_on": self.scored_on, "mean_auroc": self.mean_auroc,
                "n_concepts": self.n_concepts, "n_texts": self.n_texts, "per_concept": self.per_concept}


@dataclass(frozen=True)
class CrossSource:
    """Every cell, fitted-on major; ``n_train`` counts the train texts per source."""

    cells: tuple[SourceCell, ...]
    n_train: dict[str, int]

    def cell(self, trained_on: str, scored_on: str) -> SourceCell:
        return next(c for c in self.cells if c.trained_on == trained_on and c.scored_on == scored_on)

    def to_json(self) -> dict[str, object]:
        return {"n_train": self.n_train, "cells": [cell.to_json() for cell in self.cells]}


def text_sources(examples: Sequence[Example]) -> dict[str, str]:
    """Each text's source (the first row of a text decides)."""
    sources: dict[str, str] = {}
    for example in examples:
        sources.setdefault(example.text, example.source)
    return sources


def _rows(data: LabelledTexts, sources: Mapping[str, str], wanted: set[str]) -> list[int]:
    return [row for row, text in enumerate(data.texts) if sources.get(text) in wanted]


def _scores(pooled: torch.Tensor, data: LabelledTexts, projector: Projector, fitted: list[int]) -> dict[str, float]:
    z = project_pooled(pooled, projector, zscore=True).mean(dim=1).double().numpy()
    result = {}
    for c in fitted:
        positive, negative = data.positive[:, c].numpy(), data.negative[:, c].numpy()
        if positive.any() and negative.any():
            result[data.concepts[c]] = auroc(z[positive, c], z[negative, c])
    return result


def _cell(trained_on: str, scored_on: str, scored: tuple[torch.Tensor, LabelledTexts], projector: Projector,
          fitted: list[int]) -> SourceCell:
    per_concept = _scores(*scored, projector, fitted)
    mean = sum(per_concept.values()) / len(per_concept) if per_concept else math.nan
    return SourceCell(trained_on, scored_on, mean, len(per_concept), len(scored[1].texts), per_concept)


def cross_source(train: tuple[torch.Tensor, LabelledTexts], heldout: tuple[torch.Tensor, LabelledTexts],
                 sources: Mapping[str, str], layers: Sequence[int], method: str, device: torch.device | str = "cpu",
                 *, neutral_pcs: int = 0) -> CrossSource | None:
    """The table of the module docstring from the pooled train and held-out texts ``(pooled, labels)``; None
    unless both sources have train texts."""
    (fit_pooled, fit_data), (held_pooled, held_data) = train, heldout
    by_source = {source: _rows(fit_data, sources, {source}) for source in SOURCES}
    if not all(by_source.values()):
        return None
    cells = []
    for trained_on in TRAINED_ON:
        wanted: set[str] = set(SOURCES) if trained_on == "both" else {trained_on}
        rows = _rows(fit_data, sources, wanted)
        vectors = fit_directions(fit_pooled[rows], fit_data.subset(rows), layers, method, device,
                                 neutral_pcs=neutral_pcs)
        stacked = torch.stack([vectors[layer] for layer in layers])
        fitted = [c for c in range(len(fit_data.concepts)) if not bool(stacked[:, c].isnan().any())]
        projector = calibrated(Projector(fit_data.concepts, tuple(layers), torch.nan_to_num(stacked), None, None),
                               fit_pooled[rows])
        for scored_on in SOURCES:
            held = _rows(held_data, sources, {scored_on})
            scored = (held_pooled[held], held_data.subset(held))
            if scored_on not in wanted:
                seen = _rows(fit_data, sources, {scored_on})
                scored = (torch.cat([held_pooled[held], fit_pooled[seen]]),
                          _concat(held_data.subset(held), fit_data.subset(seen)))
            cells.append(_cell(trained_on, scored_on, scored, projector, fitted))
    return CrossSource(tuple(cells), {source: len(rows) for source, rows in by_source.items()})


def _concat(first: LabelledTexts, second: LabelledTexts) -> LabelledTexts:
    return LabelledTexts(first.concepts, first.texts + second.texts, first.keys + second.keys,
                         torch.cat([first.positive, second.positive]), torch.cat([first.negative, second.negative]))


__all__ = ["TRAINED_ON", "CrossSource", "SourceCell", "cross_source", "text_sources"]
