"""`amygdala extract` and `amygdala emotions` end to end: real arguments, real sources, temp output dirs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from amygdala.cli import main
from amygdala.extraction.sources.graph_file import read_graph_file, write_graph_file
from amygdala.extraction.stage import MANIFEST

from mcp_servers import free_port, memory_serve, official_server_command
from versioned_log import generate_log


def files(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def test_extract_defaults_to_the_bundled_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["extract", "--output-dir", str(tmp_path / "out")]) == 0
    manifest = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert manifest["source"] == "bundled sample memory graph"
    assert len(manifest["emotions"]) >= 16
    assert sorted(files(tmp_path / "out")) == sorted([MANIFEST, *manifest["files"]])
    assert f"wrote {len(manifest['emotions'])} emotions to {tmp_path / 'out'}" in capsys.readouterr().out


def test_extract_is_byte_identical_through_all_three_sources(tmp_path: Path, sample_graph_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Done-when of issue 2: file, official npm server (stdio) and amygdala memory-serve (HTTP) agree byte for byte."""
    official = write_graph_file(read_graph_file(sample_graph_path), tmp_path / "official.jsonl", "mcp-memory")
    monkeypatch.setenv("MEMORY_FILE_PATH", str(official))
    runs = {"file": ["--memory-file", str(sample_graph_path)],
            "npm": ["--memory-mcp-command", official_server_command()]}
    with memory_serve(sample_graph_path) as url:
        runs["http"] = ["--memory-mcp-url", url]
        for name, source in runs.items():
            assert main(["extract", *source, "--output-dir", str(tmp_path / name)]) == 0, name
    outputs = {name: files(tmp_path / name) for name in runs}
    manifests = {name: json.loads(output.pop(MANIFEST)) for name, output in outputs.items()}
    assert len(outputs["file"]) >= 16
    assert outputs["npm"] == outputs["file"]
    assert outputs["http"] == outputs["file"]
    assert len({manifest.pop("source") for manifest in manifests.values()}) == 3
    assert manifests["npm"] == manifests["file"] == manifests["http"]


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    invalid = tmp_path / "invalid.jsonl"
    invalid.write_text('{"key": "a", "content": "fine"}\n{"key": "b", "content": \n')
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    url = f"http://127.0.0.1:{free_port()}/mcp"
    return {
        "unreachable server": (["--memory-mcp-url", url], f"MCP memory server {url}"),
        "invalid JSONL line": (["--memory-file", str(invalid)], "line 2: invalid JSON"),
        "empty graph": (["--memory-file", str(empty)], "has no nodes"),
        "no emotion meets the thresholds": (["--min-positives", "1000"], "no emotion in bundled sample"),
        "two sources": (["--memory-file", str(empty), "--memory-mcp-url", url], "give one memory source"),
        "bad options": (["--heldout-fraction", "1.5"], "heldout_fraction=1.5"),
    }


@pytest.mark.parametrize("case", ["unreachable server", "invalid JSONL line", "empty graph",
                                  "no emotion meets the thresholds", "two sources", "bad options"])
def test_bad_input_gives_one_line_exit_2_and_no_output(case: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    argv, expected = _bad_inputs(tmp_path)[case]
    before = sorted(path.name for path in tmp_path.iterdir())
    assert main(["extract", *argv, "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("amygdala: error: ") and err.count("\n") == 1, err
    assert expected in err
    assert sorted(path.name for path in tmp_path.iterdir()) == before  # no output dir, no staging dir


def test_a_non_empty_output_dir_is_refused_without_force_and_kept_with_it(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["extract", "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already holds 1 entries" in err and "--force" in err
    assert files(out) == {"notes.txt": b"mine"}
    assert main(["extract", "--output-dir", str(out), "--force", "--emotions", "calm,Warmth"]) == 0
    assert sorted(files(out)) == ["calm.jsonl", MANIFEST, "notes.txt", "warmth.jsonl"]


def test_extract_stats_prints_the_tag_table_and_writes_nothing(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["extract", "--stats", "--output-dir", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "tags in bundled sample memory graph" in out and "Peaceful Contentment" in out
    assert not (tmp_path / "out").exists()


def test_emotions_lists_every_tag_and_marks_reference_concepts(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    graph = tmp_path / "graph.jsonl"
    graph.write_text("".join(json.dumps({"key": f"k{i}", "content": f"Entry {i} about the long walk home by the "
                                         f"canal tonight.\ncalm:9 zest:{i % 10}"}) + "\n" for i in range(12)))
    assert main(["emotions", "--memory-file", str(graph)]) == 0
    rows = {line.split()[1]: line for line in capsys.readouterr().out.splitlines()
            if line.startswith("│") and len(line.split()) > 2}
    assert "Peaceful Contentment" in rows["calm"] and "yes" in rows["calm"]
    assert rows["zest"].rstrip("│ ").endswith("-")


# ---- issue 10: versioned logs, file shapes and untagged nodes, end to end ----

def rows_of(directory: Path, emotion: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in (directory / f"{emotion}.jsonl").read_text().splitlines()]


def test_a_versioned_log_gives_examples_from_the_latest_live_versions_only(tmp_path: Path) -> None:
    """Revisions flip warmth membership, deletions remove nodes: through --memory-file and through a real
    `amygdala memory-serve` subprocess serving the same log, the examples are those of the generator's answer."""
    generated = generate_log()
    log = generated.write_jsonl(tmp_path / "log.jsonl")
    argv = ["--emotions", "warmth,calm", "--heldout-fraction", "0.25"]
    assert main(["extract", "--memory-file", str(log), "--output-dir", str(tmp_path / "file"), *argv]) == 0
    with memory_serve(log) as url:
        assert main(["extract", "--memory-mcp-url", url, "--output-dir", str(tmp_path / "served"), *argv]) == 0
    for emotion in ("warmth", "calm"):
        rows = rows_of(tmp_path / "file", emotion)
        assert {r["key"] for r in rows if r["polarity"] == "positive"} == generated.positives(emotion)
        assert {r["key"] for r in rows if r["polarity"] == "negative"} == generated.negatives(emotion)
        assert all(r["text"] == generated.live[str(r["key"])].text for r in rows)  # the latest version's text
        assert not {r["key"] for r in rows} & generated.deleted
    served, from_file = files(tmp_path / "served"), files(tmp_path / "file")
    assert {name: data for name, data in served.items() if name != MANIFEST} == \
           {name: data for name, data in from_file.items() if name != MANIFEST}
    manifest = json.loads(from_file[MANIFEST])
    assert manifest["log"] == {"records": len(generated.rows), "superseded": generated.superseded,
                               "deleted": len(generated.deleted), "kept": len(generated.live)}
    assert manifest["unknown_fields"] == ["category", "emotion", "provenance", "weight"]
    assert manifest["nodes"]["total"] == len(generated.live)


def test_a_json_array_file_with_bom_and_crlf_extracts_like_the_jsonl_file(tmp_path: Path,
                                                                          sample_graph_path: Path) -> None:
    rows = [json.loads(line) for line in sample_graph_path.read_text(encoding="utf-8").split("\n") if line]
    array = tmp_path / "graph.json"
    array.write_bytes(("\ufeff" + json.dumps(rows, indent=2, ensure_ascii=False).replace("\n", "\r\n")).encode())
    assert main(["extract", "--memory-file", str(sample_graph_path), "--output-dir", str(tmp_path / "jsonl")]) == 0
    assert main(["extract", "--memory-file", str(array), "--output-dir", str(tmp_path / "array")]) == 0
    jsonl, from_array = files(tmp_path / "jsonl"), files(tmp_path / "array")
    assert len(jsonl) >= 17 and jsonl.keys() == from_array.keys()
    assert all(jsonl[name] == from_array[name] for name in jsonl if name != MANIFEST)


def untagged_graph(path: Path) -> Path:
    """Twelve calm positives, four tagged negatives and six untagged nodes (one names calm, one repeats a text)."""
    tagged = [{"key": f"t{i:02}", "content": f"Entry {i}: swapped the disk in the build server and reran the suite."
               f"\ncalm:{9 if i < 12 else 0}"} for i in range(16)]
    untagged = [{"key": f"u{i}", "content": f"Plain note {i}: the printer on the third floor is out of toner again."}
                for i in range(4)]
    untagged += [{"key": "u8", "content": "Plain note: a calm afternoon, nothing happened at the office at all."},
                 {"key": "u9", "content": "Plain note 0: the printer on the third floor is out of toner again."}]
    path.write_text("".join(json.dumps(row) + "\n" for row in tagged + untagged))
    return path


def test_untagged_nodes_are_negatives_by_default_and_skipped_with_untagged_skip(tmp_path: Path) -> None:
    graph = untagged_graph(tmp_path / "graph.jsonl")
    assert main(["extract", "--memory-file", str(graph), "--output-dir", str(tmp_path / "default")]) == 0
    negatives = {r["key"]: r["score"] for r in rows_of(tmp_path / "default", "calm") if r["polarity"] == "negative"}
    assert negatives == {**{f"t{i}": 0.0 for i in range(12, 16)}, **{f"u{i}": 0.0 for i in range(4)}}
    manifest = json.loads((tmp_path / "default" / MANIFEST).read_text())
    assert (manifest["nodes"]["untagged"], manifest["nodes"]["untagged_used"]) == (5, 4)  # u9 repeats u0's text
    assert manifest["parameters"]["untagged"] == "negative"
    assert main(["extract", "--memory-file", str(graph), "--output-dir", str(tmp_path / "skip"),
                 "--untagged", "skip"]) == 0
    skipped = {r["key"] for r in rows_of(tmp_path / "skip", "calm") if r["polarity"] == "negative"}
    assert skipped == {f"t{i}" for i in range(12, 16)}
    manifest = json.loads((tmp_path / "skip" / MANIFEST).read_text())
    assert (manifest["nodes"]["untagged"], manifest["nodes"]["untagged_used"]) == (0, 0)
    assert {s["key"] for s in manifest["skipped_nodes"] if s["reason"] == "no tag line"} == {
        "u0", "u1", "u2", "u3", "u8", "u9"}
