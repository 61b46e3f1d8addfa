"""Memory sources: every backend returns the same ``MemoryNode`` records.

- ``graph_file``: a local JSONL file (amygdala's node format or the official memory server's storage file)
- ``mcp_client``: any MCP memory server (streamable HTTP URL or stdio command) via its ``read_graph`` tool
"""

from __future__ import annotations

from dataclasses import dataclass

from amygdala.errors import AmygdalaError


@dataclass(frozen=True)
class MemoryNode:
    """One memory-graph node: its key, type, timestamp and full content (tag lines included)."""

    key: str
    node_type: str
    timestamp: str
    content: str


class SourceError(AmygdalaError):
    """A memory source could not be read: names the source and what is wrong."""


__all__ = ["MemoryNode", "SourceError"]
