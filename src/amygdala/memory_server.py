"""``amygdala memory-serve``: serve one graph file as an MCP memory server (official SDK, streamable HTTP at /mcp).

It serves the file's current nodes: a versioned log is resolved when the file is read (``sources.node_log``), so
superseded and deleted records are never served and a client extracts the same examples as from the file itself.
Timestamps are served in ``MemoryNode``'s one representation (ISO-8601 UTC, or ``""``).

Tools (read-only; the server serves only the file it was started with, read once at start):

- ``read_graph()``: the whole graph in the official ``@modelcontextprotocol/server-memory`` shape,
  ``{"entities": [{"name", "entityType", "observations"}], "relations": []}`` (one observation: the content).
- ``list_nodes(offset, limit)``: one page of nodes ``{"key", "node_type", "timestamp", "content"}`` plus
  ``next_offset`` (``null`` on the last page) and ``total``, so a large graph need not come in one message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from typing_extensions import TypedDict  # pydantic needs it for output schemas on Python < 3.12

from amygdala.ports import bind_error
from amygdala.sources import MemoryNode, SourceError

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

MCP_PATH = "/mcp"
MAX_PAGE_SIZE = 5000
DEFAULT_PAGE_SIZE = 500

class Entity(TypedDict):
    name: str
    entityType: str
    observations: list[str]
Relation = TypedDict("Relation", {"from": str, "to": str, "relationType": str})


class Graph(TypedDict):
    entities: list[Entity]
    relations: list[Relation]


class Node(TypedDict):
    key: str
    node_type: str
    timestamp: str
    content: str


class NodePage(TypedDict):
    nodes: list[Node]
    next_offset: int | None
    total: int


def graph_payload(nodes: list[MemoryNode]) -> Graph:
    """The ``read_graph`` answer for ``nodes``: one entity per node, no relations."""
    entities: list[Entity] = [{"name": node.key, "entityType": node.node_type, "observations": [node.content]}
                              for node in nodes]
    return {"entities": entities, "relations": []}


def node_page(nodes: list[MemoryNode], offset: int, limit: int) -> NodePage:
    """The ``list_nodes`` answer: ``nodes[offset:offset + limit]`` and where the next page starts."""
    if offset < 0 or not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"list_nodes(offset={offset}, limit={limit}): offset must be >= 0 and limit "
                         f"within 1-{MAX_PAGE_SIZE}")
    page = nodes[offset:offset + limit]
    end = offset + len(page)
    rows: list[Node] = [{"key": n.key, "node_type": n.node_type, "timestamp": n.timestamp, "content": n.content}
                        for n in page]
    return {"nodes": rows, "next_offset": end if end < len(nodes) else None, "total": len(nodes)}


def build_memory_server(nodes: list[MemoryNode], name: str = "amygdala-memory") -> MCPServer:
    """An MCP server answering ``read_graph`` and ``list_nodes`` from ``nodes`` (kept in the given order)."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    server = MCPServer(name, log_level="WARNING")
    served = list(nodes)

    @server.tool(name="read_graph", description="Read the entire knowledge graph")
    def read_graph() -> Graph:
        return graph_payload(served)

    @server.tool(name="list_nodes", description="List memory nodes a page at a time: pass next_offset back "
                                                "as offset until it is null")
    def list_nodes(offset: int = 0, limit: int = DEFAULT_PAGE_SIZE) -> NodePage:
        try:
            return node_page(served, offset, limit)
        except ValueError as exc:
            raise ToolError(str(exc)) from None

    return server


def check_port_free(host: str, port: int) -> None:
    """Raise ``SourceError`` naming host and port when the address cannot be bound (checked before serving)."""
    if (reason := bind_error(host, port)) is not None:
        raise SourceError(f"cannot serve on {host}:{port}: {reason}; choose another --port "
                          f"or stop the process using it")


def serve_memory(nodes: list[MemoryNode], host: str = "127.0.0.1", port: int = 7777) -> None:
    """Serve ``nodes`` over MCP streamable HTTP at ``http://host:port/mcp`` until interrupted (blocking)."""
    if not 0 < port < 65536:
        raise SourceError(f"port {port} is not a TCP port: choose one within 1-65535")
    check_port_free(host, port)
    build_memory_server(nodes).run("streamable-http", host=host, port=port, streamable_http_path=MCP_PATH)


__all__ = ["MCP_PATH", "build_memory_server", "check_port_free", "graph_payload", "node_page", "serve_memory"]
