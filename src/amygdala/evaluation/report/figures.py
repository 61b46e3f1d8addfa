"""The report's figures, drawn with matplotlib's object API on the Agg canvas (no pyplot state) and inlined
as base64 PNG ``<img>`` tags."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from amygdala.artifact import LayerCurve
from amygdala.evaluation.checks.sweeps import Sweeps
from amygdala.evaluation.concept_space import ConceptSpace
from amygdala.evaluation.report.tables import mean_of
from amygdala.evaluation.results import Evaluation

_TICK_LIMIT = 40


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    return f'<img alt="figure" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def curve_figure(evaluation: Evaluation, curve: LayerCurve | None) -> str:
    figure = Figure(figsize=(7.5, 3.6), layout="constrained")
    axes = figure.add_subplot()
    if curve is not None:
        axes.plot(curve.layers, curve.mean_auroc, "-o", ms=3, color="#4363d8", label="validation (train split)")
        chosen = [curve.mean_auroc[curve.layers.index(layer)] for layer in curve.chosen]
        axes.plot(curve.chosen, chosen, "o", ms=9, mfc="none", color="#4363d8", label="chosen")
    by_layer = {layer: [s for s in evaluation.scores if s.layer == layer] for layer in evaluation.layers}
    axes.plot(evaluation.layers, [mean_of([s.auroc for s in by_layer[layer]]) for layer in evaluation.layers], "s",
              color="#e6194b", label="held-out")
    random_mean = [mean_of([s.random_auroc for s in by_layer[layer]]) for layer in evaluation.layers]
    axes.plot(evaluation.layers, random_mean, "x", color="#808080", label="random direction")
    axes.axhline(0.5, color="#bbbbbb", lw=0.8, ls="--")
    axes.set(xlabel="layer", ylabel="mean AUROC over concepts", ylim=(0.3, 1.0))
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.legend(loc="lower right", fontsize=8)
    return _png(figure)


def _heatmap(axes: Any, matrix: Sequence[Sequence[float]], labels: Sequence[str], columns: Sequence[str],
             title: str, vmin: float, vmax: float, cmap: str, annotate: bool = False, ylabels: bool = True) -> Any:
    values = [[math.nan if v is None else v for v in row] for row in matrix]
    image = axes.imshow(values, vmin=vmin, vmax=vmax, cmap=cmap, aspect="auto", interpolation="nearest")
    axes.set_title(title, fontsize=9)
    axes.set_yticks(range(len(labels)) if ylabels and len(labels) <= _TICK_LIMIT else [],
                    labels if ylabels and len(labels) <= _TICK_LIMIT else [], fontsize=7)
    axes.set_xticks(range(len(columns)) if len(columns) <= _TICK_LIMIT else [],
                    columns if len(columns) <= _TICK_LIMIT else [], fontsize=7, rotation=90)
    if annotate and len(labels) * len(columns) <= 400:
        for i, row in enumerate(values):
            for j, value in enumerate(row):
                if not math.isnan(value) and value != 0:
                    dark = image.cmap(image.norm(value))[:3]
                    ink = "white" if 0.3 * dark[0] + 0.59 * dark[1] + 0.11 * dark[2] < 0.5 else "black"
                    axes.text(j, i, f"{value:.2f}" if isinstance(value, float) else str(value), ha="center",
                              va="center", fontsize=6, color=ink)
    return image


def matrix_figures(evaluation: Evaluation) -> tuple[str, str, str]:
    """(held-out AUROC per concept and layer, cosine per layer beside phi, confusion matrix) as <img> tags."""
    concepts, layers = evaluation.concepts, evaluation.layers
    table = {(s.concept, s.layer): s.auroc for s in evaluation.scores}
    figure = Figure(figsize=(1.6 + 0.7 * len(layers), 1 + 0.22 * len(concepts)), layout="constrained")
    axes = figure.add_subplot()
    image = _heatmap(axes, [[table[c, layer] for layer in layers] for c in concepts], concepts,
                     [f"L{layer}" for layer in layers], "held-out AUROC", 0.5, 1.0, "viridis", annotate=True)
    figure.colorbar(image, ax=axes)
    auroc_map = _png(figure)
    panels = [(f"cosine, layer {c.layer}", c.cosine, -1.0) for c in evaluation.crosstalk] + [
        ("label co-occurrence (phi)", evaluation.phi, -1.0)]
    side = 0.16 * len(concepts) + 1.5
    columns = min(3, len(panels))
    figure = Figure(figsize=(columns * side + 1, math.ceil(len(panels) / columns) * side), layout="constrained")
    for index, (title, matrix, vmin) in enumerate(panels):
        axes = figure.add_subplot(math.ceil(len(panels) / columns), columns, index + 1)
        image = _heatmap(axes, matrix, concepts, concepts, title, vmin, 1.0, "RdBu_r",
                         ylabels=index % columns == 0)
    figure.colorbar(image, ax=figure.axes, shrink=0.6)
    cosines = _png(figure)
    combined = next(r for r in evaluation.rankings if r.layer is None)
    figure = Figure(figsize=(1.5 + 0.25 * len(concepts), 1 + 0.25 * len(concepts)), layout="constrained")
    axes = figure.add_subplot()
    _heatmap(axes, combined.confusion, concepts, concepts, "true (rows) vs top-ranked (columns)", 0,
             max(1, max(max(row) for row in combined.confusion)), "Blues", annotate=True)
    return auroc_map, cosines, _png(figure)


def concept_space_figure(space: ConceptSpace, lexicon: str = "valence") -> str:
    """PC1 against PC2 of the concept vectors at the layer whose PC1 follows ``lexicon`` best, coloured by the
    lexicon's rating (grey: not covered); names shown up to ``_TICK_LIMIT * 2`` concepts."""
    best = space.best(lexicon)
    ratings = space.ratings.get(lexicon, {})
    figure = Figure(figsize=(7.5, 5.5), layout="constrained")
    axes = figure.add_subplot()
    covered = [i for i, c in enumerate(space.concepts) if c in ratings]
    others = [i for i in range(len(space.concepts)) if i not in set(covered)]
    axes.scatter([best.pc1[i] for i in others], [best.pc2[i] for i in others], c="#bbb", s=14)
    points = axes.scatter([best.pc1[i] for i in covered], [best.pc2[i] for i in covered], s=18, cmap="coolwarm_r",
                          c=[ratings[space.concepts[i]] for i in covered], vmin=-3, vmax=3)
    figure.colorbar(points, ax=axes, label=f"lexicon {lexicon}")
    if len(space.concepts) <= _TICK_LIMIT * 2:
        for i, concept in enumerate(space.concepts):
            axes.annotate(concept, (best.pc1[i], best.pc2[i]), fontsize=7, alpha=0.8)
    r1, r2 = best.r[lexicon]
    axes.set(xlabel=f"PC1 ({best.explained[0]:.0%} of variance; |r| with {lexicon} {r1:.2f})",
             ylabel=f"PC2 ({best.explained[1]:.0%}; |r| {r2:.2f})", title=f"concept vectors at layer {best.layer}")
    return _png(figure)


def counts_figure(matrix: Sequence[Sequence[int]], concepts: Sequence[str], title: str) -> str:
    """A count matrix (rows: true concept, columns: top-ranked) as an annotated heatmap."""
    figure = Figure(figsize=(1.5 + 0.25 * len(concepts), 1 + 0.25 * len(concepts)), layout="constrained")
    _heatmap(figure.add_subplot(), matrix, concepts, concepts, title, 0, max(1, max(max(row) for row in matrix)),
             "Blues", annotate=True)
    return _png(figure)


def sweep_figure(sweeps: Sweeps) -> str:
    """Each case's readouts against the rank of its slot values, coloured by whether it moved as expected."""
    figure = Figure(figsize=(7.5, 3.6), layout="constrained")
    axes = figure.add_subplot()
    for case in sweeps.cases:
        centred = [score - sum(case.scores) / len(case.scores) for score in case.scores]
        colour = "#3cb44b" if case.signed_rho > 0 else "#e6194b"
        axes.plot(range(len(centred)), [case.direction * value for value in centred], "-", lw=0.8, alpha=0.6,
                  color=colour)
    axes.axhline(0, color="#bbbbbb", lw=0.8, ls="--")
    axes.set(xlabel="slot value (rank, low to high)", ylabel="readout x expected sign (centred)",
             title="intensity sweeps: green moved as expected, red against")
    return _png(figure)
