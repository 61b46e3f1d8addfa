"""Memory sources against real inputs: JSONL and JSON-array files in both row shapes, versioned logs, the official
npm memory server over stdio, `amygdala memory-serve` over streamable HTTP (a real subprocess on a loopback port)
and a log-serving MCP server built on the official SDK (stdio)."""

from __future__ import annotations

import json
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from amygdala.extraction.sources import LogCounts, MemoryNode, SourceError
from amygdala.extraction.sources.graph_file import (
    bundled_sample_path,
    read_graph_file,
    read_memory_file,
    write_graph_file,
)
from amygdala.extraction.sources.mcp_client import read_mcp_graph, read_mcp_memory

from mcp_servers import free_port, log_server_command, memory_serve, official_server_command
from versioned_log import generate_log

NODES = [
    MemoryNode("journal-1", "journal", "2026-01-05T09:14:00Z", "First line.\nSecond line, café.\nwarmth:8 calm:2"),
    MemoryNode("digest-1", "daily_digest", "2026-01-05T22:00:00Z", "Synced the mirror.\n\nclarity:2"),
    MemoryNode("pattern-1", "pattern", "", "Single line\u2028with a line separator inside. calm:9"),
]


def without_timestamps(nodes: list[MemoryNode]) -> list[MemoryNode]:
    return [MemoryNode(n.key, n.node_type, "", n.content) for n in nodes]


@pytest.fixture
def official_file(tmp_path: Path) -> Path:
    """NODES in the official server's storage format, plus a relation line (which readers ignore)."""
    path = write_graph_file(NODES, tmp_path / "memory.jsonl", "mcp-memory")
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"type": "relation", "from": "journal-1", "to": "digest-1", "relationType": "x"}))
    return path


@pytest.fixture(scope="module")
def served_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = write_graph_file(NODES, tmp_path_factory.mktemp("served") / "graph.jsonl")
    with memory_serve(path) as url:
        yield url


def test_read_graph_file_reads_amygdala_nodes(tmp_path: Path) -> None:
    assert read_graph_file(write_graph_file(NODES, tmp_path / "graph.jsonl")) == NODES


def test_read_graph_file_reads_the_official_storage_format(official_file: Path) -> None:
    assert read_graph_file(official_file) == without_timestamps(NODES)


def test_read_graph_file_reports_every_bad_line_with_its_number(tmp_path: Path) -> None:
    path = tmp_path / "graph.jsonl"
    good = json.dumps({"key": "a", "content": "text"})
    path.write_text("\n".join([good, "", '{"key": "b", "content": ', good, '{"content": "no key"}', "[1]"]) + "\n")
    with pytest.raises(SourceError) as error:
        read_graph_file(path)
    message = str(error.value)
    assert "\n" not in message and str(path) in message
    assert "line 3: invalid JSON" in message
    assert "line 5: field 'key' must be a string" in message
    assert "line 6: expected a JSON object" in message


def test_read_graph_file_reports_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        read_graph_file(tmp_path / "missing.jsonl")


def test_read_graph_file_reads_an_empty_file_as_an_empty_graph(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("\n\n")
    assert read_graph_file(tmp_path / "empty.jsonl") == []


def test_bundled_sample_is_a_readable_graph() -> None:
    nodes = read_graph_file(bundled_sample_path())
    assert len(nodes) >= 100
    assert all(node.key and node.content for node in nodes)


def test_official_server_over_stdio_gives_the_same_nodes(official_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMORY_FILE_PATH", str(official_file))
    assert read_mcp_graph(command=official_server_command()) == without_timestamps(NODES)


def test_memory_serve_over_http_gives_the_same_nodes_with_timestamps(served_url: str) -> None:
    assert read_mcp_graph(url=served_url) == NODES


def test_memory_serve_paging_gives_the_same_nodes(served_url: str) -> None:
    assert read_mcp_graph(url=served_url, page_size=1) == NODES


def test_a_tool_error_becomes_a_source_error_naming_the_server(served_url: str) -> None:
    with pytest.raises(SourceError, match=rf"{served_url}: tool list_nodes failed: .*limit within"):
        read_mcp_graph(url=served_url, page_size=0)


def test_an_unreachable_url_is_a_one_line_source_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/mcp"
    with pytest.raises(SourceError, match=rf"^cannot read the memory graph from MCP memory server {url}: .*running"):
        read_mcp_graph(url=url, timeout_s=20)


def test_a_command_that_is_not_a_server_is_a_source_error_with_its_stderr(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"command 'no-such-memory-server-xyz'"):
        read_mcp_graph(command="no-such-memory-server-xyz")
    script = tmp_path / "fail.py"
    script.write_text("import sys\nprint('cannot open the memory store', file=sys.stderr)\nsys.exit(3)\n")
    with pytest.raises(SourceError, match="server stderr: cannot open the memory store"):
        read_mcp_graph(command=f"python3 {script}")


def test_read_mcp_graph_needs_exactly_one_server() -> None:
    with pytest.raises(SourceError, match="exactly one"):
        read_mcp_graph()
    with pytest.raises(SourceError, match="exactly one"):
        read_mcp_graph(url="http://127.0.0.1:1/mcp", command="x")


# ---- issue 10: timestamps, versioned logs, unknown fields, file shapes, streaming ----

def write_rows(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def utc_text(epoch: int) -> str:
    """Reference: epoch seconds as ISO-8601 UTC through the C library's gmtime (not datetime)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


@pytest.mark.parametrize(("written", "expected"), [
    ("2026-01-05T09:14:00Z", "2026-01-05T09:14:00Z"),
    ("2026-01-05T11:14:00+02:00", "2026-01-05T09:14:00Z"),
    ("2026-01-05T09:14:00", "2026-01-05T09:14:00Z"),
    ("2026-01-05", "2026-01-05T00:00:00Z"),
    ("2026-01-05T09:14:00.250Z", "2026-01-05T09:14:00.250000Z"),
    (1770028800, utc_text(1770028800)),
    (1770028800.5, utc_text(1770028800)[:-1] + ".500000Z"),
    (0, "1970-01-01T00:00:00Z"),
    (None, ""),
    ("", ""),
])
def test_timestamps_in_every_accepted_form_become_iso_8601_utc(tmp_path: Path, written: object, expected: str) -> None:
    path = write_rows(tmp_path / "graph.jsonl", [{"key": "a", "content": "x", "timestamp": written}])
    assert read_graph_file(path) == [MemoryNode("a", "", expected, "x")]


def test_an_absent_timestamp_is_empty(tmp_path: Path) -> None:
    assert read_graph_file(write_rows(tmp_path / "g.jsonl", [{"key": "a", "content": "x"}]))[0].timestamp == ""


@pytest.mark.parametrize(("written", "rule"), [
    ([2026, 1, 5], "must be an ISO-8601 string or epoch seconds"), (True, "must be an ISO-8601 string or epoch"),
    ({"s": 1}, "must be an ISO-8601 string"), ("yesterday", "must be an ISO-8601 date-time"),
    ("2026-13-40", "must be an ISO-8601 date-time"), (1e300, "must be epoch seconds within years 1-9999"),
])
def test_an_unreadable_timestamp_names_the_line_the_field_and_the_node(tmp_path: Path, written: object,
                                                                      rule: str) -> None:
    path = write_rows(tmp_path / "graph.jsonl", [{"key": "a", "content": "x"},
                                                 {"key": "b", "content": "y", "timestamp": written}])
    with pytest.raises(SourceError, match=rf"line 2: field 'timestamp' of node 'b' {rule}"):
        read_graph_file(path)


def log_row(uuid: str, version: int | None, content: str | None, **extra: object) -> dict[str, object]:
    row: dict[str, object] = {"uuid": uuid, "key": f"key-{uuid}", **extra}
    if version is not None:
        row["version"] = version
    if content is not None:
        row["content"] = content
    return row


def test_a_versioned_log_keeps_the_highest_version_and_applies_deletions(tmp_path: Path) -> None:
    rows = [log_row("a", 1, "a1"), log_row("b", 1, "b1"), log_row("c", 2, "c2"), log_row("a", 3, "a3"),
            log_row("c", 1, "c1"), log_row("b", 2, None, deleted=True), log_row("d", 1, "d1"),
            log_row("d", 2, None, deleted=True), log_row("d", 5, "d5")]
    graph = read_memory_file(write_rows(tmp_path / "log.jsonl", rows))
    assert [(node.key, node.content) for node in graph.nodes] == [("key-c", "c2"), ("key-a", "a3"), ("key-d", "d5")]
    assert graph.counts == LogCounts(records=9, superseded=5, deleted=1, kept=3)


def test_a_version_tie_goes_to_the_later_record_and_an_absent_version_counts_as_0(tmp_path: Path) -> None:
    rows = [log_row("a", 2, "first"), log_row("a", 2, "second"), log_row("b", None, "b-first"),
            log_row("b", None, "b-second"), log_row("b", 0, "b-zero"), log_row("b", None, "b-last")]
    graph = read_memory_file(write_rows(tmp_path / "log.jsonl", rows))
    assert [node.content for node in graph.nodes] == ["second", "b-last"]
    assert graph.counts == LogCounts(records=6, superseded=4, deleted=0, kept=2)


def test_identity_is_the_uuid_when_present_else_the_key(tmp_path: Path) -> None:
    rows = [{"key": "k", "content": "by key", "version": 1}, {"uuid": "u", "key": "k", "content": "by uuid"},
            {"uuid": "v", "content": "no key: the uuid is the key"}, {"key": "k", "content": "by key v2", "version": 2},
            {"uuid": "w", "key": None, "node_type": None, "content": "null is absent"}]
    nodes = read_graph_file(write_rows(tmp_path / "log.jsonl", rows))
    assert [(n.key, n.content) for n in nodes] == [("k", "by uuid"), ("v", "no key: the uuid is the key"),
                                                  ("k", "by key v2"), ("w", "null is absent")]


def test_records_without_log_fields_keep_every_identical_copy_as_before(tmp_path: Path) -> None:
    """Identical repeats of a key without versions are left to example selection (one copy used, the others
    reported), as before the log rules."""
    rows = [{"key": "a", "content": "one"}, {"key": "b", "content": "b"}, {"key": "a", "content": "one"}]
    graph = read_memory_file(write_rows(tmp_path / "graph.jsonl", rows))
    assert [n.content for n in graph.nodes] == ["one", "b", "one"]
    assert graph.counts == LogCounts(records=3, superseded=0, deleted=0, kept=3)


def test_a_key_repeated_with_other_content_and_no_versions_names_both_lines(tmp_path: Path) -> None:
    """Regression: two different records under one key without version fields were both kept silently, so which one
    became an example depended on their content's sort order. Neither can be taken as current: an error names both
    lines and the fix."""
    rows = [{"key": "a", "content": "one"}, {"key": "b", "content": "b"}, {"key": "a", "content": "two"}]
    with pytest.raises(SourceError, match=r"key 'a' is repeated with other content at line 1 and line 3.*add "
                                          r"\"version\""):
        read_memory_file(write_rows(tmp_path / "graph.jsonl", rows))


@pytest.mark.parametrize(("field", "value", "rule"), [
    ("version", -1, "must be a non-negative integer, got -1"), ("version", "2", 'must be a non-negative integer'),
    ("version", 1.5, "must be a non-negative integer, got 1.5"), ("version", True, "must be a non-negative integer"),
    ("uuid", 7, "must be a non-empty string, got 7"), ("uuid", "", "must be a non-empty string"),
    ("deleted", "yes", 'must be true or false, got "yes"'), ("deleted", 1, "must be true or false, got 1"),
])
def test_a_bad_log_field_names_the_line_the_field_and_the_node(tmp_path: Path, field: str, value: object,
                                                               rule: str) -> None:
    path = write_rows(tmp_path / "log.jsonl", [{"key": "ok", "content": "x"},
                                               {"key": "n1", "content": "x", field: value}])
    with pytest.raises(SourceError) as error:
        read_graph_file(path)
    assert f"line 2: field '{field}' of node 'n1' {rule}" in str(error.value)


def test_unknown_fields_are_ignored_and_listed_once(tmp_path: Path) -> None:
    rows = [{"key": "a", "content": "x", "weight": 0.4, "emotion": 9, "provenance": {"by": "agent"}},
            {"key": "b", "content": "y", "category": None, "weight": "heavy"},
            {"type": "entity", "name": "c", "entityType": "t", "observations": ["z"], "createdAt": 5}]
    graph = read_memory_file(write_rows(tmp_path / "graph.jsonl", rows))
    assert [n.key for n in graph.nodes] == ["a", "b", "c"]
    assert graph.unknown_fields == ("category", "createdAt", "emotion", "provenance", "weight")


def test_a_bom_crlf_endings_and_blank_lines_read_like_plain_jsonl(tmp_path: Path) -> None:
    plain = write_graph_file(NODES, tmp_path / "plain.jsonl")
    lines = plain.read_text(encoding="utf-8").split("\n")[:-1]  # not splitlines: a content holds a U+2028
    windows = tmp_path / "windows.jsonl"
    windows.write_bytes(("\ufeff" + "\r\n\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))
    assert read_graph_file(windows) == read_graph_file(plain) == NODES


def test_a_json_array_file_reads_like_jsonl(tmp_path: Path) -> None:
    plain = write_graph_file(NODES, tmp_path / "plain.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in plain.split("\n") if line]
    rows.append({"type": "relation", "from": "journal-1", "to": "digest-1", "relationType": "x"})
    for name, text in (("indented.json", json.dumps(rows, indent=2, ensure_ascii=False)),
                       ("one-line.json", json.dumps(rows, ensure_ascii=False)),
                       ("bom-crlf.json", "\ufeff" + json.dumps(rows, indent=1).replace("\n", "\r\n"))):
        (tmp_path / name).write_text(text, encoding="utf-8")
        assert read_graph_file(tmp_path / name) == NODES, name
    (tmp_path / "empty.json").write_text(" [ ]\n")
    assert read_graph_file(tmp_path / "empty.json") == []


@pytest.mark.parametrize(("text", "message"), [
    ('[{"key": "a", "content": "x"},\n 3,\n "s"]', "line 2 (element 2): expected a JSON object, got a number; "
                                                 "line 3 (element 3): expected a JSON object, got a string"),
    ('[\n{"key": "a", "content": "x"},\n[1]]', "line 3 (element 2): expected a JSON object, got an array"),
    ('[{"key": "a", "content": "x"}\n{"key": "b"}]', "line 2: expected ',' or ']' after element 1"),
    ('[{"key": "a", "content": "x"}]\n{"key": "b", "content": "y"}\n', "line 2: unexpected text after the end"),
    ('[{"key": "a", "content": "x"},\n{"key": "b", "version": "2", "content": "y"}]',
     "line 2 (element 2): field 'version' of node 'b' must be a non-negative integer"),
    ('[{"key": "a", "content": "x"}', "line 1: the JSON array is not closed"),
    ('[{"key": "a", "content": "x"},\n{"key": "b", "content": }]', "line 2: invalid JSON"),
])
def test_an_array_file_that_is_not_an_array_of_objects_names_the_line(tmp_path: Path, text: str,
                                                                     message: str) -> None:
    (tmp_path / "graph.json").write_text(text)
    with pytest.raises(SourceError) as error:
        read_graph_file(tmp_path / "graph.json")
    assert str(tmp_path / "graph.json") in str(error.value) and message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("shape", ["jsonl", "array"])
def test_a_long_log_is_streamed_holding_only_the_current_version(tmp_path: Path, shape: str) -> None:
    """400 versions of one 50 kB node (20 MB): reading holds one version and a window of the file, not the log."""
    body = "the same long node, revised again " * 1500
    rows = [log_row("u", version, f"{version}: {body}") for version in range(400)]
    path = tmp_path / f"log.{shape}"
    if shape == "jsonl":
        write_rows(path, rows)
    else:
        path.write_text("[\n" + ",\n".join(json.dumps(row) for row in rows) + "\n]\n")
    tracemalloc.start()
    try:
        graph = read_memory_file(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [node.content for node in graph.nodes] == [f"399: {body}"]
    assert graph.counts == LogCounts(records=400, superseded=399, deleted=0, kept=1)
    assert path.stat().st_size > 20e6 and peak < 2e6, f"peak {peak / 1e6:.1f} MB while reading"


def test_memory_serve_serves_the_current_nodes_of_a_versioned_log(tmp_path: Path) -> None:
    generated = generate_log()
    path = generated.write_jsonl(tmp_path / "log.jsonl")
    from_file = read_memory_file(path)
    with memory_serve(path) as url:
        served = read_mcp_memory(url=url, page_size=7)
    assert served.nodes == from_file.nodes
    assert {node.key for node in served.nodes} == set(generated.live)
    assert from_file.counts == LogCounts(len(generated.rows), generated.superseded, len(generated.deleted),
                                         len(generated.live))


def test_list_nodes_rows_of_a_log_server_are_resolved_by_the_same_rules(tmp_path: Path) -> None:
    """A third-party MCP server (official SDK, stdio) whose list_nodes rows are the raw versioned log."""
    generated = generate_log()
    rows = generated.write_jsonl(tmp_path / "log.jsonl")
    served = read_mcp_memory(command=log_server_command(rows), page_size=11)
    assert served.nodes == read_memory_file(rows).nodes
    assert served.counts == read_memory_file(rows).counts
    assert served.unknown_fields == ("category", "emotion", "provenance", "weight")
    write_rows(rows, [{"key": "a", "content": "x"}, {"key": "b", "content": "y", "deleted": "no"}])
    with pytest.raises(SourceError, match=r"tool list_nodes row 1: field 'deleted' of node 'b' must be true or false"):
        read_mcp_memory(command=log_server_command(rows))


def test_an_array_file_that_is_not_utf8_is_reported_once(tmp_path: Path) -> None:
    path = tmp_path / "graph.json"
    path.write_bytes(b'[{"key": "a", "content": "caf\xe9"}]')
    with pytest.raises(SourceError, match=r"^memory file \S+graph.json is not UTF-8 text \(byte 29\): save it as UTF-8$"):
        read_graph_file(path)
