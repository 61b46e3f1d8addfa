"""The report files: strict JSON with every figure (NaN as null), a self-contained HTML page, terminal tables.

Rendering only: the tiny random model gives an evaluation quickly; its figures are checked in test_evaluation.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from amygdala.evaluation.report import curve_table, example_texts, summary_table, write_report
from amygdala.evaluation.results import EvalOptions, Evaluation
from amygdala.evaluation.stage import evaluate
from amygdala.forward.models import LoadedModel
from amygdala.training.layers import LayerCurve
from amygdala.training.stage import CAA_RECIPE, TrainOptions, train

from eval_helpers import examples


@pytest.fixture(scope="module")
def evaluation(tiny_model: LoadedModel) -> Evaluation:
    """Fear's held-out positives are dropped, so its separation cannot be measured (NaN)."""
    rows = examples()
    artifact = train(tiny_model, rows, TrainOptions(**CAA_RECIPE, target_layers=(1, 3)))
    kept = [r for r in rows if not (r.emotion == "fear" and r.split == "heldout" and r.polarity == "positive")]
    return evaluate(tiny_model, artifact, kept, EvalOptions(), example_texts(kept, 2))


def test_write_report_json_holds_every_figure_with_nan_as_null(evaluation: Evaluation, tmp_path: Path) -> None:
    curve = LayerCurve((0, 1, 2, 3), (0.5, 0.9, 0.6, 0.8), (0.4, 0.8, 0.5, 0.7), (1, 3), "diff_of_means", 4, 0, 16)
    json_path, html_path = write_report(evaluation, tmp_path / "report", curve)
    data = json.loads(json_path.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in report.json"))
    assert {(row["concept"], row["layer"]) for row in data["separation"]} == {
        (c, layer) for c in ("anger", "fear", "joy") for layer in (1, 3)}
    fear = [row for row in data["separation"] if row["concept"] == "fear"]
    assert all(row["auroc"] is None and row["n_positive"] == 0 for row in fear)
    assert data["summary"]["n_unmeasured"] == 2 and data["layer_selection"]["chosen"] == [1, 3]
    assert [r["layer"] for r in data["ranking"]] == [1, 3, None]
    assert len(data["crosstalk"]["layers"][0]["cosine"]) == 3 and len(data["crosstalk"]["phi"]) == 3
    assert data["cross_source"] is None and data["concept_space"]["published_r"] == {"valence": 0.81}
    readout = data["readouts"][0]
    assert readout["label"] == "held-out positive: anger"
    assert len(readout["values"]) == len(readout["tokens"]) and len(readout["values"][0]) == 2


def test_write_report_html_is_self_contained(evaluation: Evaluation, tmp_path: Path) -> None:
    _, html_path = write_report(evaluation, tmp_path)
    page = html_path.read_text()
    # the layer curve, AUROC map, cosines, confusion, and the concept space (joy, anger, fear: all rated)
    assert len(re.findall(r'<img alt="figure" src="data:image/png;base64,', page)) == 5
    assert "<h2>Concept space</h2>" in page and "published PC1 r 0.81" in page
    assert not re.search(r'(src|href)="(?!data:)', page), "the page must not load anything"
    assert "held-out positive: joy" in page and "<span style=\"background:" in page


def test_summary_and_curve_tables_render_each_concept_and_layer(evaluation: Evaluation) -> None:
    console = Console(record=True, width=160)
    console.print(summary_table(evaluation))
    console.print(curve_table(LayerCurve((0, 1), (0.61, 0.93), (0.5, 0.9), (1,), "lda", 4, 0, 10)))
    text = console.export_text()
    assert all(concept in text for concept in ("anger", "fear", "joy")) and "0.930" in text
    fear_row = next(line for line in text.splitlines() if line.startswith("│ fear"))
    assert "0/" in fear_row and " - " in fear_row
