"""Memory source: a local graph file, read as a stream (one line, or one array element, at a time).

- JSONL: one row per line (``records`` describes the two row shapes: amygdala's node and the official
  ``@modelcontextprotocol/server-memory`` storage line, detected per line; relation lines are ignored);
- a JSON array of such rows (``[{...}, ...]``), parsed element by element;
- either with a UTF-8 BOM, CRLF line endings and blank lines.

A versioned log is resolved as it is read (``node_log``): only the current winner per node is held. Every bad
row is collected and reported once, with its line number (for an array: the line where the element starts).
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import BinaryIO, Literal

from amygdala.extraction.sources import MemoryGraph, MemoryNode, SourceError
from amygdala.extraction.sources.node_log import NodeLog
from amygdala.extraction.sources.records import parse_row
from amygdala.outputs.atomic import atomic_write_bytes

GraphFormat = Literal["amygdala", "mcp-memory"]
SAMPLE_GRAPH = "sample_graph.jsonl"
_MAX_REPORTED = 5
_CHUNK = 1 << 16
_ROW_HELP = 'one JSON node {"key", "content", ...} or an official memory-server entity'


def bundled_sample_path() -> Path:
    """The sample memory graph shipped in the package (the embedded default source)."""
    return Path(str(resources.files("amygdala").joinpath("data", SAMPLE_GRAPH)))


class _Problems:
    """Bad rows of one file: counted, the first few kept, then raised once as a ``SourceError``."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.count = 0
        self.shown: list[str] = []

    def add(self, message: str) -> None:
        self.count += 1
        if len(self.shown) < _MAX_REPORTED:
            self.shown.append(message)

    def raise_any(self, rule: str) -> None:
        if self.count:
            more = f" (and {self.count - _MAX_REPORTED} more bad rows)" if self.count > _MAX_REPORTED else ""
            raise SourceError(f"memory file {self.where}: {'; '.join(self.shown)}{more}; {rule}")


def _load_json(raw: str) -> object:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise ValueError("invalid JSON (nested too deeply)") from None


def _add_row(log: NodeLog, problems: _Problems, where: str, row: object) -> None:
    try:
        record = parse_row(row)
        if record is not None:
            log.add(record, where)
    except ValueError as exc:
        problems.add(f"{where}: {exc}")


def _read_lines(lines: Iterable[tuple[int, str]], log: NodeLog, problems: _Problems) -> None:
    for number, raw in lines:
        if not raw.strip():
            continue
        try:
            row = _load_json(raw)
        except ValueError as exc:
            problems.add(f"line {number}: {exc}")
            continue
        _add_row(log, problems, f"line {number}", row)


def parse_graph_lines(lines: list[str], where: str) -> list[MemoryNode]:
    """Parse JSONL lines (either row shape, log resolved); every bad line is reported once with its number."""
    log, problems = NodeLog(), _Problems(where)
    _read_lines(enumerate((line.rstrip("\r") for line in lines), start=1), log, problems)
    problems.raise_any(f"each line must be {_ROW_HELP}")
    return list(log.graph(where).nodes)


def _text_chunks(handle: BinaryIO, path: Path) -> Iterator[str]:
    """The file as decoded text chunks (a leading BOM dropped); bytes that are not UTF-8 raise ``SourceError``."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    offset = 0
    while True:
        data = handle.read(_CHUNK)
        try:
            text = decoder.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            raise SourceError(f"memory file {path} is not UTF-8 text (byte {max(offset + exc.start, 0)}): save "
                              f"it as UTF-8") from None
        offset += len(data)
        if text:
            yield text
        if not data:
            return


def _numbered_lines(chunks: Iterable[str]) -> Iterator[tuple[int, str]]:
    """Lines split on ``\\n`` only (a ``\\u2028`` inside a value is no line break), CR endings removed."""
    number, pending = 0, list[str]()
    for chunk in chunks:
        if "\n" not in chunk:  # a long line: its parts are joined once it ends
            pending.append(chunk)
            continue
        first, *complete, last = chunk.split("\n")
        for line in ("".join([*pending, first]), *complete):
            number += 1
            yield number, line.rstrip("\r")
        pending = [last]
    if "".join(pending):
        yield number + 1, "".join(pending).rstrip("\r")


def _starts_an_array(path: Path) -> bool:
    with path.open("rb") as handle:
        for chunk in _text_chunks(handle, path):
            stripped = chunk.lstrip()
            if stripped:
                return stripped.startswith("[")
    return False


def read_memory_file(path: Path | str, source: str | None = None) -> MemoryGraph:
    """Read a JSONL or JSON-array graph file as a stream, its log resolved; ``source`` describes it."""
    from amygdala.extraction.sources.json_array import read_array_rows

    path = Path(path)
    if not path.is_file():
        raise SourceError(f"memory file {path} does not exist or is not a file: give --memory-file PATH")
    log, problems = NodeLog(), _Problems(str(path))
    is_array = _starts_an_array(path)
    with path.open("rb") as handle:
        chunks = _text_chunks(handle, path)
        if is_array:
            for where, row in read_array_rows(chunks, problems.add):
                _add_row(log, problems, where, row)
        else:
            _read_lines(_numbered_lines(chunks), log, problems)
    problems.raise_any(f"each {'element' if is_array else 'line'} must be {_ROW_HELP}")
    return log.graph(source or f"memory file {path}")


def read_graph_file(path: Path | str) -> list[MemoryNode]:
    """The current nodes of a graph file, in file order (``read_memory_file`` without the counts)."""
    return list(read_memory_file(path).nodes)


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


__all__ = ["GraphFormat", "bundled_sample_path", "parse_graph_lines", "read_graph_file", "read_memory_file",
           "write_graph_file"]
