"""Memory sources against real inputs: JSONL files in both formats, the official npm memory server over stdio,
and `amygdala memory-serve` over streamable HTTP (a real subprocess on a loopback port)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from amygdala.sources import MemoryNode, SourceError
from amygdala.sources.graph_file import bundled_sample_path, read_graph_file, write_graph_file
from amygdala.sources.mcp_client import read_mcp_graph

from mcp_servers import free_port, memory_serve, official_server_command

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
