"""Memory source: a local JSONL graph file, in either of two formats (detected per line).

- amygdala's node format (the bundled sample): ``{"key", "node_type", "timestamp", "content"}``
- the storage file of the official ``@modelcontextprotocol/server-memory``: ``{"type": "entity", "name",
  "entityType", "observations": [...]}`` lines (observations joined with newlines become the content) and
  ``{"type": "relation", ...}`` lines, which are ignored.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Literal

from amygdala.outputs import atomic_write_bytes
from amygdala.sources import MemoryNode, SourceError

GraphFormat = Literal["amygdala", "mcp-memory"]
SAMPLE_GRAPH = "sample_graph.jsonl"
_MAX_REPORTED = 5


def bundled_sample_path() -> Path:
    """The sample memory graph shipped in the package (the embedded default source)."""
    return Path(str(resources.files("amygdala").joinpath("data", SAMPLE_GRAPH)))


def _string_field(row: dict[str, object], name: str, required: bool) -> str:
    value = row.get(name, None if required else "")
    if not isinstance(value, str):
        raise ValueError(f"field {name!r} must be a string, got {json.dumps(value)[:40]}")
    return value


def _entity_node(row: dict[str, object]) -> MemoryNode:
    observations = row.get("observations")
    if not isinstance(observations, list) or not all(isinstance(item, str) for item in observations):
        raise ValueError("entity field 'observations' must be a list of strings")
    return MemoryNode(_string_field(row, "name", True), _string_field(row, "entityType", True), "",
                      "\n".join(observations))


def _row_node(row: object) -> MemoryNode | None:
    """One parsed line -> a node (``None`` for a relation line); raises ``ValueError`` naming the problem."""
    if not isinstance(row, dict):
        raise ValueError("expected a JSON object")
    if "type" in row and "key" not in row:
        if row["type"] == "entity":
            return _entity_node(row)
        if row["type"] == "relation":
            return None
        raise ValueError(f"unknown line type {row['type']!r}: expected 'entity' or 'relation'")
    key = _string_field(row, "key", True)
    if not key:
        raise ValueError("field 'key' is empty")
    return MemoryNode(key, _string_field(row, "node_type", False), _string_field(row, "timestamp", False),
                      _string_field(row, "content", True))


def _parse_line(raw: str) -> MemoryNode | None:
    try:
        row = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise ValueError("invalid JSON (nested too deeply)") from None
    try:  # a lone surrogate escape like "\ud800" is valid JSON but no text: nothing downstream could write it
        json.dumps(row, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"escape {exc.object[exc.start:exc.end]!r} is a lone surrogate, not a character") from None
    return _row_node(row)


def parse_graph_lines(lines: list[str], where: str) -> list[MemoryNode]:
    """Parse JSONL lines (either format); every bad line is collected, then reported once with its number."""
    nodes: list[MemoryNode] = []
    problems: list[str] = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            node = _parse_line(raw)
        except ValueError as exc:
            problems.append(f"line {number}: {exc}")
            continue
        if node is not None:
            nodes.append(node)
    if problems:
        more = f" (and {len(problems) - _MAX_REPORTED} more bad lines)" if len(problems) > _MAX_REPORTED else ""
        raise SourceError(f"memory file {where}: {'; '.join(problems[:_MAX_REPORTED])}{more}; each line must be "
                          f'one JSON node {{"key", "content", ...}} or an official memory-server entity')
    return nodes


def read_graph_file(path: Path | str) -> list[MemoryNode]:
    """Read every node of a JSONL memory graph file, in file order."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"memory file {path} does not exist or is not a file: give --memory-file PATH")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SourceError(f"memory file {path} is not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
    return parse_graph_lines(text.split("\n"), str(path))


def _node_row(node: MemoryNode, graph_format: GraphFormat) -> dict[str, object]:
    if graph_format == "amygdala":
        return {"key": node.key, "node_type": node.node_type, "timestamp": node.timestamp, "content": node.content}
    return {"type": "entity", "name": node.key, "entityType": node.node_type,
            "observations": node.content.split("\n")}


def write_graph_file(nodes: list[MemoryNode], path: Path | str, graph_format: GraphFormat = "amygdala") -> Path:
    """Write nodes as a JSONL graph file, atomically. ``mcp-memory`` writes the official server's storage format
    (one observation per content line, so joining them with newlines gives the content back; timestamps are lost).
    """
    path = Path(path)
    lines = [json.dumps(_node_row(node, graph_format), ensure_ascii=False) + "\n" for node in nodes]
    atomic_write_bytes(path, "".join(lines).encode("utf-8"))
    return path


__all__ = ["GraphFormat", "bundled_sample_path", "parse_graph_lines", "read_graph_file", "write_graph_file"]
