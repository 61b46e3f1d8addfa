"""``report.html``: one self-contained page (figures inline, no network)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from amygdala.artifact import LayerCurve
from amygdala.evaluation.report.battery import battery_sections
from amygdala.evaluation.report.data import clean
from amygdala.evaluation.report.figures import curve_figure, matrix_figures
from amygdala.evaluation.report.sources import concept_space_section, cross_source_section
from amygdala.evaluation.report.tables import check_lines, ci, concept_flags, fmt, mean_of, scores_by_concept
from amygdala.evaluation.results import Evaluation
from amygdala.outputs.sanitise import html_text
from amygdala.readout.scale import ABOVE_COLOUR, BELOW_COLOUR, colour_strength, strength_reference, token_span


def _token_spans(tokens: Sequence[str], values: Sequence[float], zscore: bool) -> str:
    """Tokens on the above (positive) or below (negative) colour at the colour strength of |value|
    (``readout.scale``). The first token of a longer text stays uncoloured, and out of the raw reference: its
    residual is an attention-sink outlier in most models."""
    sink = len(tokens) > 1
    reference = strength_reference([abs(v) for v in values[int(sink):]], zscore)
    return "".join(token_span(token, ABOVE_COLOUR if value > 0 else BELOW_COLOUR,
                              0.0 if index == 0 and sink else colour_strength(abs(value), reference), f"{value:.2f}")
                   for index, (token, value) in enumerate(zip(tokens, values)))


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
        rows = "".join(f"<tr><th>{html_text(evaluation.concepts[c])} {float(body[:, c].mean()):+.2f}</th>"
                       f"<td class=t>{_token_spans(readout.tokens, per_token[:, c].tolist(), zscore)}</td></tr>"
                       for c in named + ranked[:top])
        blocks.append(f"<h3>{html_text(label)}</h3><table class=tok>{rows}</table>")
    return "".join(blocks) or "<p>No texts (pass --texts file.jsonl).</p>"


def _separation_rows(evaluation: Evaluation) -> str:
    flags = concept_flags(evaluation)
    rows = []
    for concept, scores in scores_by_concept(evaluation).items():
        cells = "".join(f"<td>{fmt(s.auroc)}</td>" for s in scores)
        rows.append(f"<tr><th>{html_text(concept)}</th><td>{scores[0].n_positive}/{scores[0].n_negative}</td>"
                    f"{cells}<td>{fmt(mean_of([s.cohens_d for s in scores]), 2)}</td>"
                    f"<td>{fmt(mean_of([s.random_auroc for s in scores]))}</td>"
                    f"<td>{fmt(mean_of([s.stability for s in scores]))}</td>"
                    f"<td class=l>{html_text(', '.join(flags[concept]))}</td></tr>")
    head = "".join(f"<th>AUROC L{layer}</th>" for layer in evaluation.layers)
    return (f"<table><tr><th>concept</th><th>pos/neg</th>{head}<th>d</th><th>random</th><th>stability</th>"
            f"<th>flags</th></tr>{''.join(rows)}</table>")


def _crossval_section(evaluation: Evaluation) -> str:
    crossval = evaluation.crossval
    if crossval is None:
        return ""
    rows = "".join(f"<tr><th>{html_text(c.concept)}</th><td>{c.n_positive}/{c.n_negative}</td>"
                   f"<td>{ci(c.auroc)}</td><td>{ci(c.random_auroc)}</td>"
                   f"{''.join(f'<td>{fmt(a)}</td>' for a in c.layer_auroc)}</tr>" for c in crossval.per_concept)
    head = "".join(f"<th>L{layer}</th>" for layer in crossval.layers)
    return (f"<h2>{crossval.folds}-fold cross-validation by node</h2><p class=k>mean AUROC "
            f"<b>{ci(crossval.mean_auroc)}</b>, random {ci(crossval.random_mean_auroc)}; top-1 "
            f"<b>{ci(crossval.top1)}</b>, top-3 {ci(crossval.top3)}</p><p>{len(crossval.fold)} texts of "
            f"{crossval.n_nodes} nodes, each scored once by vectors fitted on the other folds; score: out-of-fold "
            f"mean z over the layers; [95% CI] from {crossval.n_boot} bootstrap resamples of the nodes; "
            f"{crossval.n_pairs} ranked pairs.</p><table><tr><th>concept</th><th>pos/neg</th><th>AUROC [95% CI]</th>"
            f"<th>random [95% CI]</th>{head}</tr>{rows}</table>")


def _checks_section(evaluation: Evaluation) -> str:
    lines = check_lines(evaluation)
    if not lines:
        return ""
    items = "".join(f"<li>{html_text(line)}</li>" for line in lines)
    lexical = evaluation.lexical
    rows = "" if lexical is None else "".join(
        f"<tr><th>{html_text(c.concept)}</th><td>{fmt(c.threshold, 2)}</td><td>{fmt(c.false_positive_rate)}</td>"
        f"<td>{fmt(c.negative_rate)}</td><td>{c.n_control}</td><td>{c.n_positive}</td></tr>"
        for c in lexical.per_concept)
    table = (f"<table><tr><th>concept</th><th>threshold (z)</th><th>control FPR</th><th>negatives above</th>"
             f"<th>control texts</th><th>positives</th></tr>{rows}</table>") if rows else ""
    return f"<h2>Out-of-distribution checks</h2><ul>{items}</ul>{table}"


def _ranking_rows(evaluation: Evaluation) -> str:
    rows = "".join(f"<tr><th>{'mean z' if r.layer is None else f'layer {r.layer}'}</th><td>{fmt(r.top1)}</td>"
                   f"<td>{fmt(r.top3)}</td><td>{fmt(r.mean_rank, 2)}</td><td>{r.n_pairs}</td></tr>"
                   for r in evaluation.rankings)
    return f"<table><tr><th></th><th>top-1</th><th>top-3</th><th>mean rank</th><th>pairs</th></tr>{rows}</table>"


_STYLE = ("body{font-family:sans-serif;max-width:70em;margin:1.5em auto;color:#222}table{border-collapse:collapse;"
          "margin:.5em 0}td,th{border:1px solid #ddd;padding:2px 6px;font-size:13px;text-align:right}"
          "td.l,th{text-align:left}.t{white-space:pre-wrap;font-family:monospace;text-align:left;line-height:1.7}"
          "table.tok th{width:10em;vertical-align:top}img{max-width:100%}.k{font-size:1.1em}"
          "ol.hits li{font-size:13px}mark{background:#ffd54f}")


def report_html(evaluation: Evaluation, curve: LayerCurve | None = None) -> str:
    """The whole report as one standalone HTML page."""
    summary = evaluation.summary()
    auroc_map, cosines, confusion = matrix_figures(evaluation)
    crosstalk = "".join(
        f"<li>layer {c.layer}: pairs with cosine &gt; {evaluation.options.cosine_flag:g}: "
        f"{html_text(', '.join(f'{a}~{b} {v:.2f}' for a, b, v in c.close_pairs) or 'none')}; explained by the "
        f"others (R² ≥ {evaluation.options.explained_flag:g}): "
        f"{html_text(', '.join(c.explained_concepts) or 'none')}"
        f"</li>" for c in evaluation.crosstalk)
    key = (f"<p class=k>mean held-out AUROC <b>{fmt(summary['mean_auroc'])}</b> (min {fmt(summary['min_auroc'])} "
           f"at {html_text(' @ layer '.join(map(str, summary['min_auroc_at'] or ['-'])))}), "
           f"random direction {fmt(summary['random_mean_auroc'])}; "
           f"top-1 <b>{fmt(summary['top1'])}</b>, top-3 {fmt(summary['top3'])}; stability "
           f"{fmt(summary['mean_stability'])}</p>")
    options = html_text(json.dumps(clean(evaluation.options.to_json())))
    chosen = f"; layer selection chose {list(curve.chosen)}" if curve else ""
    return (f"<!doctype html><html><head><meta charset=utf-8><title>amygdala eval</title><style>{_STYLE}</style>"
            f"</head><body><h1>amygdala eval</h1><p>{html_text(evaluation.model_id)}: {len(evaluation.concepts)} "
            f"concepts at layers {list(evaluation.layers)}{chosen}; {evaluation.n_heldout_texts} held-out and "
            f"{evaluation.n_train_texts} train texts.</p>{key}<p><small>options {options}</small></p>"
            f"<h2>AUROC by layer</h2>{curve_figure(evaluation, curve)}{auroc_map}"
            f"<h2>Separation</h2>{_separation_rows(evaluation)}"
            f"<h2>N-way ranking</h2>{_ranking_rows(evaluation)}{confusion}"
            f"{_crossval_section(evaluation)}{cross_source_section(evaluation.cross_source)}"
            f"{concept_space_section(evaluation.concept_space)}{_checks_section(evaluation)}"
            f"<h2>Cross-talk</h2><ul>{crosstalk}</ul>{cosines}"
            f"<h2>Token readouts</h2><p>Mean over layers of the {'z-scored' if evaluation.readouts_zscored else 'raw'} "
            "readout; red positive, blue negative; hover for values. Rows: the concept a label names, then the 3 "
            "highest.</p>"
            f"{_readout_blocks(evaluation)}{battery_sections(evaluation.battery)}</body></html>\n")
