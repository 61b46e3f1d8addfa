"""The report's across-sources table and concept-space section: rich for the terminal, HTML for the page."""

from __future__ import annotations

import html

from rich.table import Table

from amygdala.evaluation.concept_space import ConceptSpace
from amygdala.evaluation.report.figures import concept_space_figure
from amygdala.evaluation.report.tables import fmt
from amygdala.evaluation.sources import TRAINED_ON, CrossSource
from amygdala.extraction.examples import SOURCES

_SCORED = {"graph": "scored on memory texts", "synthetic": "scored on stories"}
_FITTED = {"graph": "trained on memory texts", "synthetic": "trained on stories", "both": "trained on both"}


def _cell(cross: CrossSource, trained_on: str, scored_on: str) -> str:
    cell = cross.cell(trained_on, scored_on)
    return f"{fmt(cell.mean_auroc)} ({cell.n_concepts} concepts, {cell.n_texts} texts)"


def cross_source_table(cross: CrossSource) -> Table:
    """Mean AUROC per (fitted on, scored on) source."""
    table = Table(title="across sources: mean AUROC (held-out texts of a source trained on; all texts of the other)")
    table.add_column("")
    for scored_on in SOURCES:
        table.add_column(_SCORED[scored_on], justify="right")
    for trained_on in TRAINED_ON:
        table.add_row(_FITTED[trained_on], *(_cell(cross, trained_on, scored_on) for scored_on in SOURCES))
    return table


def cross_source_section(cross: CrossSource | None) -> str:
    if cross is None:
        return ""
    head = "".join(f"<th>{_SCORED[s]}</th>" for s in SOURCES)
    rows = "".join(f"<tr><th>{_FITTED[t]}</th>{''.join(f'<td>{_cell(cross, t, s)}</td>' for s in SOURCES)}</tr>"
                   for t in TRAINED_ON)
    counts = ", ".join(f"{n} {source}" for source, n in cross.n_train.items())
    return (f"<h2>Across sources</h2><p>Mean AUROC of vectors fitted on the train texts of one source ({counts}), "
            "scored on the held-out texts of a source they were fitted on, or on all texts of the other.</p>"
            f"<table><tr><th></th>{head}</tr>{rows}</table>")


def concept_space_line(space: ConceptSpace | None) -> str | None:
    if space is None:
        return None
    parts = []
    for lexicon, published in space.published.items():
        best = space.best(lexicon)
        r1, r2 = best.r[lexicon]
        parts.append(f"PC1 |r| {fmt(r1)}, PC2 |r| {fmt(r2)} with lexicon {lexicon} at layer {best.layer} over "
                     f"{len(space.ratings[lexicon])}/{len(space.concepts)} covered concepts (published PC1 r "
                     f"{published:g} over 171)")
    return "concept space: " + "; ".join(parts)


def concept_space_section(space: ConceptSpace | None) -> str:
    if space is None:
        return ""
    rows = "".join(f"<tr><th>layer {s.layer}</th>"
                   + "".join(f"<td>{fmt(s.r[k][0])}</td><td>{fmt(s.r[k][1])}</td>" for k in space.ratings)
                   + f"<td>{s.explained[0]:.0%} / {s.explained[1]:.0%}</td></tr>" for s in space.layers)
    head = "".join(f"<th>PC1 |r| {k}</th><th>PC2 |r| {k}</th>" for k in space.ratings)
    return (f"<h2>Concept space</h2><p>{html.escape(concept_space_line(space) or '')}</p>"
            f"<table><tr><th></th>{head}<th>variance PC1 / PC2</th></tr>{rows}</table>"
            f"{concept_space_figure(space)}")
