"""Memory sources: every backend returns the same ``MemoryNode`` records, resolved by the same log rules.

- ``graph_file``: a local file: JSONL or a JSON array of amygdala's node records or the official memory server's
  storage lines
- ``mcp_client``: any MCP memory server (streamable HTTP URL or stdio command): its paged ``list_nodes`` tool, or
  ``read_graph``
- ``records``: one row (of either shape, from any backend) -> a ``NodeRecord``: the node, its identity and version
- ``node_log``: a stream of records -> the current nodes (highest version per identity, deletions applied)

``read_memory`` picks the backend for a ``MemorySource``: a file, an MCP URL, an MCP command, or the bundled sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from amygdala.errors import AmygdalaError

BUNDLED_SAMPLE = "bundled sample memory graph"


@dataclass(frozen=True)
class MemoryNode:
    """One memory-graph node: its key, type, timestamp and full content (tag lines included).

    ``timestamp`` has one representation whatever the source wrote: ISO-8601 in UTC,
    ``YYYY-MM-DDTHH:MM:SSZ`` (``YYYY-MM-DDTHH:MM:SS.ffffffZ`` when it has a fraction of a second), or ``""``
    when the source gives none. Sources accept an ISO-8601 string (an offset is converted to UTC; none means
    UTC), integer or float epoch seconds, or an absent/null field, and normalise it to this.
    """

    key: str
    node_type: str
    timestamp: str
    content: str


@dataclass(frozen=True)
class LogCounts:
    """How a source's records became nodes: ``records`` read = ``superseded`` (a later or higher version of the
    same node won) + ``deleted`` (nodes whose winning record says ``deleted: true``) + ``kept`` (nodes returned)."""

    records: int
    superseded: int = 0
    deleted: int = 0
    kept: int = 0


@dataclass(frozen=True)
class MemoryGraph:
    """What a source read: the current nodes (in the order of their winning records), how its log was resolved,
    the names of the fields it ignored (sorted), and a description of the source for messages and extract.json."""

    nodes: tuple[MemoryNode, ...]
    counts: LogCounts
    unknown_fields: tuple[str, ...] = ()
    source: str = "the memory graph"

    @classmethod
    def of(cls, nodes: list[MemoryNode] | tuple[MemoryNode, ...], source: str = "the memory graph") -> MemoryGraph:
        """Plain nodes as a graph: one record each, nothing superseded or deleted."""
        return cls(tuple(nodes), LogCounts(len(nodes), kept=len(nodes)), (), source)


class SourceError(AmygdalaError):
    """A memory source could not be read: names the source and what is wrong."""


@dataclass(frozen=True)
class MemorySource:
    """Where memory is read from: at most one of a graph ``file``, an MCP server ``url`` (streamable HTTP) or an
    MCP server ``command`` (stdio); none of them means the bundled sample graph."""

    file: Path | None = None
    url: str | None = None
    command: str | None = None
    #: Bearer key sent to ``url`` (e.g. ``amygdala memory-serve --api-key``); never shown in a repr.
    api_key: str | None = field(default=None, repr=False)

    def check(self) -> None:
        """Raise ``SourceError`` when more than one source is given, or a key without a URL."""
        given = [flag for flag, value in (("--memory-file", self.file), ("--memory-mcp-url", self.url),
                                          ("--memory-mcp-command", self.command)) if value is not None]
        if len(given) > 1:
            raise SourceError(f"give one memory source, not {' and '.join(given)}")
        if self.api_key is not None and self.url is None:
            raise SourceError("--memory-mcp-api-key is sent to --memory-mcp-url only: give the URL, or drop the key")


def read_memory(source: MemorySource = MemorySource()) -> MemoryGraph:
    """Read the one source given (default: the bundled sample), with its log resolved (see ``node_log``)."""
    source.check()
    if source.url is not None or source.command is not None:
        from amygdala.extraction.sources.mcp_client import read_mcp_memory

        return read_mcp_memory(url=source.url, command=source.command, api_key=source.api_key)
    from amygdala.extraction.sources.graph_file import bundled_sample_path, read_memory_file

    if source.file is None:
        return read_memory_file(bundled_sample_path(), BUNDLED_SAMPLE)
    return read_memory_file(source.file)


__all__ = ["LogCounts", "MemoryGraph", "MemoryNode", "MemorySource", "SourceError", "read_memory"]
