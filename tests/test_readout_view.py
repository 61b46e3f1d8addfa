"""Offline readout files and views: input lines (JSON or plain), output records (pooled as the spec says, or per
token), and the HTML and terminal views with escaped tokens."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch

from amygdala.artifact import ReadoutArtifact
from amygdala.forward.pooling import PoolingSpec
from amygdala.readout.projection import TextReadout
from amygdala.readout.view import (
    InputText,
    ReadoutInputError,
    html_page,
    parse_input_lines,
    readout_record,
    terminal_view,
    write_jsonl,
)

ARTIFACT = ReadoutArtifact(("joy", "fear"), (2, 5), {2: torch.eye(2, 4), 5: torch.eye(2, 4)}, 4)
# three tokens x two layers x two concepts: token 1 is joyful, token 2 fearful
READOUT = TextReadout((7, 8, 9), ("<b>", "sun", " & dark"),
                      torch.tensor([[[9.0, 0.0], [9.0, 0.0]], [[2.0, 0.5], [3.0, 0.0]], [[0.0, 1.0], [0.5, 4.0]]]))


def test_parse_input_lines_reads_json_and_plain_lines_and_numbers_them() -> None:
    lines = ['{"id": "a", "text": "first"}\n', "\n", "plain text {not json\n", '{"text": "no id"}\n']
    assert parse_input_lines(lines, "in.jsonl") == [InputText("a", "first"), InputText(3, "plain text {not json"),
                                                    InputText(4, "no id")]


def test_parse_input_lines_names_every_bad_line_and_an_empty_input() -> None:
    with pytest.raises(ReadoutInputError, match=r"in.jsonl:1, in.jsonl:3: JSON line\(s\) without a non-empty string"):
        parse_input_lines(['{"id": 1}', "ok", '{"text": ""}'], "in.jsonl")
    with pytest.raises(ReadoutInputError, match="holds no texts"):
        parse_input_lines(["", "  "], "in.jsonl")
    with pytest.raises(ReadoutInputError, match="is not UTF-8 text"):
        parse_input_lines(io.TextIOWrapper(io.BytesIO(b"ok\n\xff\xfe\n"), encoding="utf-8"), "in.txt")


def test_readout_record_pools_as_the_spec_says_or_keeps_every_token() -> None:
    item = InputText("a", "text")
    mean = readout_record(item, READOUT, ARTIFACT, per_token=False, spec=PoolingSpec("mean", 1), zscore=True)
    assert mean == {"id": "a", "layers": [2, 5], "concepts": ["joy", "fear"], "zscore": True, "pooling": "mean",
                    "skip_tokens": 1, "readout": [[1.0, 0.75], [1.75, 2.0]]}
    last = readout_record(item, READOUT, ARTIFACT, per_token=False, spec=PoolingSpec("last"), zscore=False)
    assert (last["readout"], last["skip_tokens"]) == ([[0.0, 1.0], [0.5, 4.0]], 0)
    tokens = readout_record(item, READOUT, ARTIFACT, per_token=True, spec=PoolingSpec(), zscore=False)
    assert tokens["tokens"] == ["<b>", "sun", " & dark"] and tokens["token_ids"] == [7, 8, 9]
    assert tokens["readout"] == READOUT.values.tolist() and "pooling" not in tokens


def test_write_jsonl_writes_one_line_per_record(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "out.jsonl", [{"id": 1, "text": "é"}, {"id": 2}])
    assert [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()] == [
        {"id": 1, "text": "é"}, {"id": 2}]


def test_views_colour_each_token_by_its_top_concept_and_escape_html() -> None:
    page = html_page([(InputText("a", "text"), READOUT)], ARTIFACT)
    assert "&lt;b&gt;" in page and " &amp; dark" in page and "<b>" not in page
    assert "layer 5, raw readout" in page and 'title="fear 4.00, joy 0.50"' in page
    view = terminal_view(InputText("a", "text"), READOUT, ARTIFACT, zscore=True)
    assert view.plain.startswith("a: <b>sun & dark") and "joy" in view.plain and "fear" in view.plain
