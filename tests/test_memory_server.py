"""`amygdala memory-serve`: its tools in process, its read_graph against the official server's, and its CLI edge."""

from __future__ import annotations

import json
import shlex
import socket
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

from amygdala.cli import main
from amygdala.extraction.memory_server import build_memory_server, check_port_free, graph_payload, node_page
from amygdala.extraction.sources import MemoryNode, SourceError
from amygdala.extraction.sources.graph_file import write_graph_file

from mcp_servers import free_port, memory_serve, official_server_command

NODES = [MemoryNode(f"node-{i}", "journal", f"2026-01-{i + 1:02}", f"Entry {i}.\nwarmth:{i}") for i in range(7)]


async def _call(server: Any, calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    async with Client(server) as client:
        return [await client.call_tool(name, arguments) for name, arguments in calls]


def call(server: Any, *calls: tuple[str, dict[str, Any]]) -> list[Any]:
    return anyio.run(_call, server, list(calls))


def test_read_graph_has_the_official_shape() -> None:
    [result] = call(build_memory_server(NODES), ("read_graph", {}))
    assert not result.is_error
    assert result.structured_content == graph_payload(NODES)
    assert list(result.structured_content) == ["entities", "relations"]
    assert result.structured_content["entities"][0] == {"name": "node-0", "entityType": "journal",
                                                        "observations": ["Entry 0.\nwarmth:0"]}
    assert json.loads(result.content[0].text) == result.structured_content


def test_list_nodes_pages_through_every_node_once_in_order() -> None:
    server = build_memory_server(NODES)
    pages = call(server, ("list_nodes", {"offset": 0, "limit": 3}), ("list_nodes", {"offset": 3, "limit": 3}),
                 ("list_nodes", {"offset": 6, "limit": 3}))
    payloads = [page.structured_content for page in pages]
    assert [p["next_offset"] for p in payloads] == [3, 6, None]
    assert {p["total"] for p in payloads} == {7}
    rows = [row for p in payloads for row in p["nodes"]]
    assert [MemoryNode(**row) for row in rows] == NODES


def test_list_nodes_rejects_a_bad_page_with_a_tool_error() -> None:
    [result] = call(build_memory_server(NODES), ("list_nodes", {"offset": -1, "limit": 10}))
    assert result.is_error
    assert "offset must be >= 0" in result.content[0].text


def test_node_page_past_the_end_is_empty_and_final() -> None:
    assert node_page(NODES, 10, 5) == {"nodes": [], "next_offset": None, "total": 7}
    with pytest.raises(ValueError, match="limit within"):
        node_page(NODES, 0, 0)


def test_read_graph_matches_the_official_server_on_the_same_graph(tmp_path: Path) -> None:
    """Independent reference: the official server's read_graph on the equivalent storage file."""
    command = official_server_command()
    official = tmp_path / "memory.jsonl"
    official.write_text("".join(json.dumps({"type": "entity", "name": n.key, "entityType": n.node_type,
                                            "observations": [n.content]}) + "\n" for n in NODES))
    node, script = shlex.split(command)
    params = StdioServerParameters(command=node, args=[script], env={"MEMORY_FILE_PATH": str(official)})
    [theirs] = call(params, ("read_graph", {}))
    with memory_serve(write_graph_file(NODES, tmp_path / "graph.jsonl")) as url:
        [ours] = call(url, ("read_graph", {}))
    assert ours.structured_content == theirs.structured_content
    assert json.loads(ours.content[0].text) == json.loads(theirs.content[0].text)


def test_check_port_free_names_a_busy_port() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SourceError, match=rf"cannot serve on 127.0.0.1:{port}: .*another --port"):
            check_port_free("127.0.0.1", port)
    check_port_free("127.0.0.1", free_port())


def test_memory_serve_command_refuses_a_busy_port_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    graph = write_graph_file(NODES, tmp_path / "graph.jsonl")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        code = main(["memory-serve", "--file", str(graph), "--port", str(busy.getsockname()[1])])
    assert code == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


def test_memory_serve_command_refuses_an_invalid_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "graph.jsonl").write_text('{"key": "a", "content": "x"}\nnot json\n')
    assert main(["memory-serve", "--file", str(tmp_path / "graph.jsonl"), "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "line 2: invalid JSON" in err
