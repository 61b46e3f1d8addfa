"""The evaluation report: ``report.json`` (every number), ``report.html`` (self-contained: figures are inline PNGs
drawn with matplotlib's object API on the Agg canvas, no pyplot state) and rich tables for the terminal.

NaN (a figure that could not be measured, e.g. a concept without held-out positives) is ``null`` in JSON and
``-`` in tables.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from rich.table import Table

from amygdala.artifact import LayerCurve
from amygdala.crossval import CrossValidation
from amygdala.evaluation import Evaluation
from amygdala.examples import Example
from amygdala.metrics import Interval
from amygdala.publish import publish_files

REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
_TICK_LIMIT = 40


def _clean(value: Any) -> Any:
    """JSON-ready: NaN/inf -> None, tuples -> lists, Paths -> str, floats rounded to 6 digits."""
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): _clean(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(item) for item in value]
    return str(value) if isinstance(value, Path) else value


def report_data(evaluation: Evaluation, curve: LayerCurve | None = None) -> dict[str, Any]:
    """Every figure of ``evaluation`` (and the training layer curve, if any) as one JSON-ready dict."""
    readouts = [{"label": label, "tokens": list(readout.tokens), "layers": list(evaluation.layers),
                 "values": readout.values.tolist()}
                for label, readout in zip(evaluation.readout_labels, evaluation.readouts)]
    return _clean({
        "summary": evaluation.summary(), "model": evaluation.model_id, "concepts": evaluation.concepts,
        "layers": evaluation.layers, "options": evaluation.options.to_json(),
        "n_train_texts": evaluation.n_train_texts,
        "separation": [asdict(score) for score in evaluation.scores],
        "ranking": [asdict(ranking) for ranking in evaluation.rankings],
        "crosstalk": {"phi": evaluation.phi, "layers": [asdict(crosstalk) for crosstalk in evaluation.crosstalk]},
        "layer_selection": curve.to_json() if curve else None,
        "crossval": _crossval_data(evaluation.crossval),
        "valence_check": ({**evaluation.valence.summary(), **asdict(evaluation.valence)}
                          if evaluation.valence else None),
        "lexical_control": ({**evaluation.lexical.summary(), **asdict(evaluation.lexical)}
                            if evaluation.lexical else None),
        "readouts": readouts,
    })


def _crossval_data(crossval: CrossValidation | None) -> dict[str, Any] | None:
    """The cross-validation's figures (not its z-scores); intervals as {estimate, low, high}."""
    if crossval is None:
        return None
    return {**crossval.summary(), "seed": crossval.seed, "layers": crossval.layers,
            "per_concept": [asdict(concept) for concept in crossval.per_concept]}


def example_texts(examples: Sequence[Example], count: int = 6) -> list[tuple[str, str]]:
    """Up to ``count`` held-out positive texts, one per concept (in name order), labelled for the report."""
    chosen: dict[str, str] = {}
    for example in sorted(examples, key=lambda e: (e.emotion, e.key)):
        if example.split == "heldout" and example.polarity == "positive" and example.emotion not in chosen:
            chosen[example.emotion] = example.text
    return [(f"held-out positive: {concept}", text) for concept, text in list(chosen.items())[:count]]


def _fmt(value: float, digits: int = 3) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _by_concept(evaluation: Evaluation) -> dict[str, list[Any]]:
    rows: dict[str, list[Any]] = {concept: [] for concept in evaluation.concepts}
    for score in evaluation.scores:
        rows[score.concept].append(score)
    return rows


def _flags(evaluation: Evaluation) -> dict[str, list[str]]:
    """Per concept: ``≈partner cos`` (its highest cosine over the layers), then ``R² Lx,Ly`` if others explain it."""
    close: dict[str, dict[str, float]] = {concept: {} for concept in evaluation.concepts}
    explained: dict[str, list[int]] = {concept: [] for concept in evaluation.concepts}
    for crosstalk in evaluation.crosstalk:
        for a, b, cosine in crosstalk.close_pairs:
            for one, other in ((a, b), (b, a)):
                close[one][other] = max(cosine, close[one].get(other, -1.0))
        for concept in crosstalk.explained_concepts:
            explained[concept].append(crosstalk.layer)
    return {concept: [f"≈{other} {cosine:.2f}" for other, cosine in sorted(close[concept].items(),
                                                                         key=lambda item: -item[1])]
            + ([f"R² L{','.join(map(str, explained[concept]))}"] if explained[concept] else [])
            for concept in evaluation.concepts}


def _mean(values: Sequence[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


def summary_table(evaluation: Evaluation) -> Table:
    """Per concept: held-out counts, AUROC (mean and min over layers), Cohen's d, random baseline, stability."""
    summary = evaluation.summary()
    table = Table(title=f"held-out separation at layers {', '.join(map(str, evaluation.layers))}",
                  caption=(f"mean AUROC {_fmt(summary['mean_auroc'])} (min {_fmt(summary['min_auroc'])}), random "
                           f"{_fmt(summary['random_mean_auroc'])}, top-1 {_fmt(summary['top1'])}, top-3 "
                           f"{_fmt(summary['top3'])}, stability {_fmt(summary['mean_stability'])}"))
    for name in ("concept", "pos/neg", "AUROC", "min", "d", "random", "stability", "flags"):
        table.add_column(name, justify="left" if name in ("concept", "flags") else "right", no_wrap=name != "flags")
    flags = _flags(evaluation)
    for concept, scores in _by_concept(evaluation).items():
        aurocs = [s.auroc for s in scores]
        table.add_row(concept, f"{scores[0].n_positive}/{scores[0].n_negative}", _fmt(_mean(aurocs)),
                      _fmt(min((a for a in aurocs if not math.isnan(a)), default=math.nan)),
                      _fmt(_mean([s.cohens_d for s in scores]), 2), _fmt(_mean([s.random_auroc for s in scores])),
                      _fmt(_mean([s.stability for s in scores])),
                      " ".join(flags[concept][:2]) + (f" +{len(flags[concept]) - 2}" if flags[concept][2:] else ""))
    return table


def _ci(interval: Interval) -> str:
    return f"{_fmt(interval.estimate)} [{_fmt(interval.low)}, {_fmt(interval.high)}]"


def crossval_table(crossval: CrossValidation) -> Table:
    """Per concept: out-of-fold AUROC with its 95% CI, the random baseline's, and the scored positives/negatives."""
    table = Table(title=f"{crossval.folds}-fold cross-validation by node ({len(crossval.fold)} texts, "
                        f"{crossval.n_nodes} nodes; out-of-fold mean z over layers "
                        f"{', '.join(map(str, crossval.layers))})",
                  caption=(f"mean AUROC {_ci(crossval.mean_auroc)}, random {_ci(crossval.random_mean_auroc)}, "
                           f"top-1 {_ci(crossval.top1)}, top-3 {_ci(crossval.top3)} ({crossval.n_pairs} pairs); "
                           f"[95% CI, {crossval.n_boot} node bootstraps]"))
    for name in ("concept", "pos/neg", "AUROC [95% CI]", "random [95% CI]"):
        table.add_column(name, justify="left" if name == "concept" else "right", no_wrap=True)
    for concept in crossval.per_concept:
        table.add_row(concept.concept, f"{concept.n_positive}/{concept.n_negative}", _ci(concept.auroc),
                      _ci(concept.random_auroc))
    return table


def check_lines(evaluation: Evaluation) -> list[str]:
    """One line each for the valence check and the lexical control, when measured."""
    lines = []
    if (valence := evaluation.valence) is not None:
        lines.append(f"valence check: Spearman rho {_ci(valence.rho)} vs human ratings of {valence.n_sentences} "
                     f"sentences ({valence.corpus}); VADER lexicon rho {_fmt(valence.vader_rho)}; PC1 vs lexicon "
                     f"valence |r| {_fmt(valence.pc1_r)} over {len(valence.concept_valence)}/{valence.n_concepts} "
                     f"covered concepts (published {valence.published_pc1_r:g} over 171)")
    if (lexical := evaluation.lexical) is not None:
        source = "out-of-fold" if evaluation.crossval is not None else "held-out"
        lines.append(f"lexical control: false-positive rate {_fmt(lexical.false_positive_rate)} of "
                     f"{lexical.n_texts} texts naming an emotion without expressing it, at the threshold of "
                     f"{lexical.true_positive_rate:.0%} true positives ({source}); real negatives above it "
                     f"{_fmt(lexical.negative_rate)}")
    return lines


def curve_table(curve: LayerCurve) -> Table:
    """The layer-selection curve: validation AUROC per layer, chosen layers marked."""
    table = Table(title=f"layer selection ({curve.folds}-fold by node on the train split, {curve.method})")
    for name in ("layer", "mean AUROC", "min AUROC", "chosen"):
        table.add_column(name, justify="right")
    for layer, mean, low in zip(curve.layers, curve.mean_auroc, curve.min_auroc):
        table.add_row(str(layer), _fmt(mean), _fmt(low), "*" if layer in curve.chosen else "")
    return table


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    return f'<img alt="figure" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _curve_figure(evaluation: Evaluation, curve: LayerCurve | None) -> str:
    figure = Figure(figsize=(7.5, 3.6), layout="constrained")
    axes = figure.add_subplot()
    if curve is not None:
        axes.plot(curve.layers, curve.mean_auroc, "-o", ms=3, color="#4363d8", label="validation (train split)")
        chosen = [curve.mean_auroc[curve.layers.index(layer)] for layer in curve.chosen]
        axes.plot(curve.chosen, chosen, "o", ms=9, mfc="none", color="#4363d8", label="chosen")
    by_layer = {layer: [s for s in evaluation.scores if s.layer == layer] for layer in evaluation.layers}
    axes.plot(evaluation.layers, [_mean([s.auroc for s in by_layer[layer]]) for layer in evaluation.layers], "s",
              color="#e6194b", label="held-out")
    random_mean = [_mean([s.random_auroc for s in by_layer[layer]]) for layer in evaluation.layers]
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


def _matrix_figures(evaluation: Evaluation) -> tuple[str, str, str]:
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


def _token_spans(tokens: Sequence[str], values: Sequence[float], zscore: bool) -> str:
    """Tokens on red (positive) or blue (negative) backgrounds, strength |value| / 3 (z) or / the largest |value|.
    The first token of a longer text stays uncoloured: its residual is an attention-sink outlier in most models."""
    scale = 3.0 if zscore else max((abs(v) for v in values[1:] or values), default=1.0) or 1.0
    spans = []
    for index, (token, value) in enumerate(zip(tokens, values)):
        alpha = 0.0 if index == 0 and len(tokens) > 1 else min(abs(value) / scale, 1.0) * 0.85
        colour = f"rgba(230,25,75,{alpha:.2f})" if value > 0 else f"rgba(67,99,216,{alpha:.2f})"
        spans.append(f'<span style="background:{colour}" title="{value:.2f}">{html.escape(token)}</span>')
    return "".join(spans)


def _readout_blocks(evaluation: Evaluation, top: int = 3) -> str:
    """Per text: its ``top`` concepts by mean readout (mean over layers, over tokens but the first), and any concept
    its label names (``held-out positive: joy``), each with its tokens highlighted."""
    zscore = evaluation.readouts_zscored
    blocks = []
    for label, readout in zip(evaluation.readout_labels, evaluation.readouts):
        per_token = readout.values.mean(dim=1)
        body = per_token[1:] if per_token.shape[0] > 1 else per_token
        named = [c for c, concept in enumerate(evaluation.concepts) if label.endswith(f": {concept}")]
        ranked = [c for c in body.mean(dim=0).argsort(descending=True).tolist() if c not in named]
        rows = "".join(f"<tr><th>{html.escape(evaluation.concepts[c])} {float(body[:, c].mean()):+.2f}</th>"
                       f"<td class=t>{_token_spans(readout.tokens, per_token[:, c].tolist(), zscore)}</td></tr>"
                       for c in named + ranked[:top])
        blocks.append(f"<h3>{html.escape(label)}</h3><table class=tok>{rows}</table>")
    return "".join(blocks) or "<p>No texts (pass --texts file.jsonl).</p>"


def _separation_rows(evaluation: Evaluation) -> str:
    flags = _flags(evaluation)
    rows = []
    for concept, scores in _by_concept(evaluation).items():
        cells = "".join(f"<td>{_fmt(s.auroc)}</td>" for s in scores)
        rows.append(f"<tr><th>{html.escape(concept)}</th><td>{scores[0].n_positive}/{scores[0].n_negative}</td>"
                    f"{cells}<td>{_fmt(_mean([s.cohens_d for s in scores]), 2)}</td>"
                    f"<td>{_fmt(_mean([s.random_auroc for s in scores]))}</td>"
                    f"<td>{_fmt(_mean([s.stability for s in scores]))}</td>"
                    f"<td class=l>{html.escape(', '.join(flags[concept]))}</td></tr>")
    head = "".join(f"<th>AUROC L{layer}</th>" for layer in evaluation.layers)
    return (f"<table><tr><th>concept</th><th>pos/neg</th>{head}<th>d</th><th>random</th><th>stability</th>"
            f"<th>flags</th></tr>{''.join(rows)}</table>")


def _crossval_section(evaluation: Evaluation) -> str:
    crossval = evaluation.crossval
    if crossval is None:
        return ""
    rows = "".join(f"<tr><th>{html.escape(c.concept)}</th><td>{c.n_positive}/{c.n_negative}</td>"
                   f"<td>{_ci(c.auroc)}</td><td>{_ci(c.random_auroc)}</td>"
                   f"{''.join(f'<td>{_fmt(a)}</td>' for a in c.layer_auroc)}</tr>" for c in crossval.per_concept)
    head = "".join(f"<th>L{layer}</th>" for layer in crossval.layers)
    return (f"<h2>{crossval.folds}-fold cross-validation by node</h2><p class=k>mean AUROC "
            f"<b>{_ci(crossval.mean_auroc)}</b>, random {_ci(crossval.random_mean_auroc)}; top-1 "
            f"<b>{_ci(crossval.top1)}</b>, top-3 {_ci(crossval.top3)}</p><p>{len(crossval.fold)} texts of "
            f"{crossval.n_nodes} nodes, each scored once by vectors fitted on the other folds; score: out-of-fold "
            f"mean z over the layers; [95% CI] from {crossval.n_boot} bootstrap resamples of the nodes; "
            f"{crossval.n_pairs} ranked pairs.</p><table><tr><th>concept</th><th>pos/neg</th><th>AUROC [95% CI]</th>"
            f"<th>random [95% CI]</th>{head}</tr>{rows}</table>")


def _checks_section(evaluation: Evaluation) -> str:
    lines = check_lines(evaluation)
    if not lines:
        return ""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    lexical = evaluation.lexical
    rows = "" if lexical is None else "".join(
        f"<tr><th>{html.escape(c.concept)}</th><td>{_fmt(c.threshold, 2)}</td><td>{_fmt(c.false_positive_rate)}</td>"
        f"<td>{_fmt(c.negative_rate)}</td><td>{c.n_control}</td><td>{c.n_positive}</td></tr>"
        for c in lexical.per_concept)
    table = (f"<table><tr><th>concept</th><th>threshold (z)</th><th>control FPR</th><th>negatives above</th>"
             f"<th>control texts</th><th>positives</th></tr>{rows}</table>") if rows else ""
    return f"<h2>Out-of-distribution checks</h2><ul>{items}</ul>{table}"


def _ranking_rows(evaluation: Evaluation) -> str:
    rows = "".join(f"<tr><th>{'mean z' if r.layer is None else f'layer {r.layer}'}</th><td>{_fmt(r.top1)}</td>"
                   f"<td>{_fmt(r.top3)}</td><td>{_fmt(r.mean_rank, 2)}</td><td>{r.n_pairs}</td></tr>"
                   for r in evaluation.rankings)
    return f"<table><tr><th></th><th>top-1</th><th>top-3</th><th>mean rank</th><th>pairs</th></tr>{rows}</table>"


_STYLE = ("body{font-family:sans-serif;max-width:70em;margin:1.5em auto;color:#222}table{border-collapse:collapse;"
          "margin:.5em 0}td,th{border:1px solid #ddd;padding:2px 6px;font-size:13px;text-align:right}"
          "td.l,th{text-align:left}.t{white-space:pre-wrap;font-family:monospace;text-align:left;line-height:1.7}"
          "table.tok th{width:10em;vertical-align:top}img{max-width:100%}.k{font-size:1.1em}")


def report_html(evaluation: Evaluation, curve: LayerCurve | None = None) -> str:
    """The whole report as one standalone HTML page."""
    summary = evaluation.summary()
    auroc_map, cosines, confusion = _matrix_figures(evaluation)
    crosstalk = "".join(
        f"<li>layer {c.layer}: pairs with cosine &gt; {evaluation.options.cosine_flag:g}: "
        f"{html.escape(', '.join(f'{a}~{b} {v:.2f}' for a, b, v in c.close_pairs) or 'none')}; explained by the "
        f"others (R² ≥ {evaluation.options.explained_flag:g}): "
        f"{html.escape(', '.join(c.explained_concepts) or 'none')}"
        f"</li>" for c in evaluation.crosstalk)
    key = (f"<p class=k>mean held-out AUROC <b>{_fmt(summary['mean_auroc'])}</b> (min {_fmt(summary['min_auroc'])} "
           f"at {html.escape(' @ layer '.join(map(str, summary['min_auroc_at'] or ['-'])))}), "
           f"random direction {_fmt(summary['random_mean_auroc'])}; "
           f"top-1 <b>{_fmt(summary['top1'])}</b>, top-3 {_fmt(summary['top3'])}; stability "
           f"{_fmt(summary['mean_stability'])}</p>")
    options = html.escape(json.dumps(_clean(evaluation.options.to_json())))
    chosen = f"; layer selection chose {list(curve.chosen)}" if curve else ""
    return (f"<!doctype html><html><head><meta charset=utf-8><title>amygdala eval</title><style>{_STYLE}</style>"
            f"</head><body><h1>amygdala eval</h1><p>{html.escape(evaluation.model_id)}: {len(evaluation.concepts)} "
            f"concepts at layers {list(evaluation.layers)}{chosen}; {evaluation.n_heldout_texts} held-out and "
            f"{evaluation.n_train_texts} train texts.</p>{key}<p><small>options {options}</small></p>"
            f"<h2>AUROC by layer</h2>{_curve_figure(evaluation, curve)}{auroc_map}"
            f"<h2>Separation</h2>{_separation_rows(evaluation)}"
            f"<h2>N-way ranking</h2>{_ranking_rows(evaluation)}{confusion}"
            f"{_crossval_section(evaluation)}{_checks_section(evaluation)}"
            f"<h2>Cross-talk</h2><ul>{crosstalk}</ul>{cosines}"
            f"<h2>Token readouts</h2><p>Mean over layers of the {'z-scored' if evaluation.readouts_zscored else 'raw'} "
            "readout; red positive, blue negative; hover for values. Rows: the concept a label names, then the 3 "
            "highest.</p>"
            f"{_readout_blocks(evaluation)}</body></html>\n")


def write_report(evaluation: Evaluation, report_dir: Path, curve: LayerCurve | None = None) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.html`` into ``report_dir`` as one set (``publish``); returns their paths."""
    report_dir = Path(report_dir)
    data = (json.dumps(report_data(evaluation, curve), indent=1, allow_nan=False) + "\n").encode()
    page = report_html(evaluation, curve).encode()
    publish_files({report_dir / REPORT_JSON: data, report_dir / REPORT_HTML: page})
    return report_dir / REPORT_JSON, report_dir / REPORT_HTML
