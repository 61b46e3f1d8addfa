"""Writing an examples dir: file layout, extract.json, byte-identical reruns, atomicity and --force rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from amygdala.extraction.examples import ExamplesError, read_examples
from amygdala.extraction.scoring import ExtractOptions
from amygdala.extraction.sources import LogCounts, MemoryGraph, MemoryNode, MemorySource, SourceError
from amygdala.extraction.sources.graph_file import read_graph_file
from amygdala.extraction.stage import MANIFEST, extract, extract_from
from amygdala.extraction.tags import format_content

OPTIONS = ExtractOptions(min_positives=2, min_content_chars=10, heldout_fraction=0.25)


def nodes() -> list[MemoryNode]:
    rows = [MemoryNode(f"n{i:02}", "journal", "", format_content(
        f"Entry {i}: rebuilt the index and walked home past the canal.", {"joy": 9 if i % 3 == 0 else 0,
                                                                          "calm": 9 if i % 4 == 0 else 0}))
            for i in range(24)]
    return rows + [MemoryNode("bad", "journal", "", "Entry bad: a day with a broken tag line.\njoy:12 calm:2")]


def tree(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def test_extract_writes_one_file_per_emotion_and_a_manifest(tmp_path: Path) -> None:
    result = extract(nodes(), OPTIONS, tmp_path / "out", "unit graph")
    assert result.files == ("calm.jsonl", "joy.jsonl", MANIFEST)
    assert sorted(tree(tmp_path / "out")) == ["calm.jsonl", MANIFEST, "joy.jsonl"]
    first = json.loads((tmp_path / "out" / "joy.jsonl").read_text().splitlines()[0])
    assert list(first) == ["emotion", "polarity", "text", "key", "score", "split", "source"]
    assert first["source"] == "graph"
    assert read_examples(tmp_path / "out") == [e for emotion in ("calm", "joy") for e in result.selection.examples[emotion]]


def test_extract_manifest_records_parameters_source_counts_and_every_skip(tmp_path: Path) -> None:
    extract(nodes(), OPTIONS, tmp_path / "out", "unit graph")
    manifest = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert manifest["source"] == "unit graph"
    assert manifest["parameters"] == {**vars(OPTIONS), "emotions": None}
    assert manifest["files"] == ["calm.jsonl", "joy.jsonl"]
    counts = manifest["counts"]["joy"]
    lines = [json.loads(line) for line in (tmp_path / "out" / "joy.jsonl").read_text().splitlines()]
    for polarity in ("positive", "negative"):
        for split in ("train", "heldout"):
            assert counts[polarity][split] == sum(1 for r in lines if (r["polarity"], r["split"]) == (polarity, split))
    assert manifest["skipped_tags"] == [{"key": "bad", "token": "joy:12", "reason": "score 12 is outside 0-10"}]
    assert manifest["nodes"]["total"] == 25


def test_extract_reruns_are_byte_identical(tmp_path: Path, sample_graph_path: Path) -> None:
    graph = read_graph_file(sample_graph_path)
    extract(graph, ExtractOptions(), tmp_path / "one", "sample")
    extract(list(reversed(graph)), ExtractOptions(), tmp_path / "two", "sample")
    assert tree(tmp_path / "one") == tree(tmp_path / "two")


def test_extract_refuses_a_non_empty_dir_and_leaves_it_untouched(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ExamplesError, match=r"already holds 1 entries \(notes.txt\).*--force"):
        extract(nodes(), OPTIONS, out, "unit graph")
    assert tree(out) == {"notes.txt": b"mine"}


def test_extract_into_an_existing_empty_dir_works(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    extract(nodes(), OPTIONS, tmp_path / "out", "unit graph")
    assert MANIFEST in tree(tmp_path / "out")


def test_extract_force_replaces_own_files_removes_stale_ones_and_keeps_the_rest(tmp_path: Path) -> None:
    out = tmp_path / "out"
    extract(nodes(), OPTIONS, out, "unit graph")
    (out / "notes.txt").write_text("mine")
    (out / "other.jsonl").write_text("not listed by extract.json\n")
    extract(nodes(), ExtractOptions(**{**vars(OPTIONS), "emotions": ("joy",)}), out, "unit graph", force=True)
    assert sorted(tree(out)) == [MANIFEST, "joy.jsonl", "notes.txt", "other.jsonl"]
    assert json.loads((out / MANIFEST).read_text())["files"] == ["joy.jsonl"]


def test_a_failed_extract_leaves_no_output_and_no_staging_dir(tmp_path: Path) -> None:
    with pytest.raises(ExamplesError, match="no emotion"):
        extract(nodes(), ExtractOptions(min_positives=1000), tmp_path / "out", "unit graph")
    assert list(tmp_path.iterdir()) == []


def test_extract_refuses_an_output_path_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("x")
    with pytest.raises(ExamplesError, match="is a file"):
        extract(nodes(), OPTIONS, tmp_path / "out", "unit graph", force=True)


def test_a_successful_extract_leaves_no_staging_dir(tmp_path: Path) -> None:
    extract(nodes(), OPTIONS, tmp_path / "a" / "out", "unit graph")
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["out"]


def test_extract_manifest_counts_the_log_unknown_fields_and_untagged_nodes(tmp_path: Path) -> None:
    untagged = [MemoryNode(f"u{i}", "note", "", f"Plain note {i}: the printer on the third floor is out of toner.")
                for i in range(3)]
    memory = MemoryGraph((*nodes(), *untagged), LogCounts(records=40, superseded=10, deleted=2, kept=28),
                         ("weight",), "a versioned log")
    result = extract(memory, OPTIONS, tmp_path / "out")
    manifest = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert manifest["source"] == result.source == "a versioned log"
    assert manifest["log"] == {"records": 40, "superseded": 10, "deleted": 2, "kept": 28}
    assert manifest["unknown_fields"] == ["weight"]
    assert manifest["nodes"]["total"] == 28 and manifest["nodes"]["untagged"] == 3
    used = {row["key"] for name in result.files[:-1] for row in map(json.loads, (tmp_path / "out" / name).open())}
    assert manifest["nodes"]["untagged_used"] == len(used & {"u0", "u1", "u2"}) == 3


def test_extract_manifest_of_plain_nodes_counts_one_record_per_node(tmp_path: Path) -> None:
    extract(nodes(), OPTIONS, tmp_path / "out", "unit graph")
    manifest = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert manifest["log"] == {"records": 25, "superseded": 0, "deleted": 0, "kept": 25}
    assert manifest["unknown_fields"] == [] and manifest["nodes"]["untagged"] == 0


def test_extract_from_reads_the_source_after_checking_the_output_dir(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    missing = MemorySource(file=tmp_path / "missing.jsonl")
    with pytest.raises(ExamplesError, match="already holds 1 entries"):
        extract_from(missing, OPTIONS, tmp_path / "out")
    with pytest.raises(SourceError, match="give one memory source, not --memory-file and --memory-mcp-url"):
        extract_from(MemorySource(file=tmp_path / "g.jsonl", url="http://127.0.0.1:1/mcp"), OPTIONS, tmp_path / "new")
    result = extract_from(MemorySource(), ExtractOptions(), tmp_path / "new")
    assert result.source == "bundled sample memory graph" and result.selection.log == LogCounts(270, 0, 0, 270)
