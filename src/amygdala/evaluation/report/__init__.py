"""The evaluation report: ``report.json`` (every number, ``data``), ``report.html`` (self-contained, ``page``,
figures from ``figures``) and rich tables for the terminal (``tables``).

NaN (a figure that could not be measured, e.g. a concept without held-out positives) is ``null`` in JSON and
``-`` in tables.
"""

from __future__ import annotations

import json
from pathlib import Path

from amygdala.artifact import LayerCurve
from amygdala.evaluation.report.data import example_texts, report_data
from amygdala.evaluation.report.page import report_html
from amygdala.evaluation.report.sources import concept_space_line, cross_source_table
from amygdala.evaluation.report.tables import battery_table, check_lines, crossval_table, curve_table, summary_table
from amygdala.evaluation.results import Evaluation
from amygdala.outputs.publish import publish_files

__all__ = ["REPORT_HTML", "REPORT_JSON", "battery_table", "check_lines", "concept_space_line", "cross_source_table",
           "crossval_table", "curve_table", "example_texts", "report_data", "report_html", "summary_table",
           "write_report"]

REPORT_JSON = "report.json"
REPORT_HTML = "report.html"


def write_report(evaluation: Evaluation, report_dir: Path, curve: LayerCurve | None = None) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.html`` into ``report_dir`` as one set (``publish``); returns their paths."""
    report_dir = Path(report_dir)
    data = (json.dumps(report_data(evaluation, curve), indent=1, allow_nan=False) + "\n").encode()
    page = report_html(evaluation, curve).encode()
    publish_files({report_dir / REPORT_JSON: data, report_dir / REPORT_HTML: page})
    return report_dir / REPORT_JSON, report_dir / REPORT_HTML
