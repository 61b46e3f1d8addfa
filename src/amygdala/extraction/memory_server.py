"""``amygdala memory-serve``: serve one graph file as an MCP memory server (official SDK, streamable HTTP at /mcp).

It serves the file's current nodes: a versioned log is resolved when the file is read (``sources.node_log``), so
superseded and deleted records are never served and a client extracts the same examples as from the file itself.
Timestamps are served in ``MemoryNode``'s one representation (ISO-8601 UTC, or ``""``).

Tools (read-only; the server serves only the file it was started with, read once at start):

- ``read_graph()``: the whole graph in the official ``@modelcontextprotocol/server-memory`` shape,
  ``{"entities": [{"name", "entityType", "observations"}], "relations": []}`` (one observation: the content).
- ``list_nodes(offset, limit)``: one page of nodes ``{"key", "node_type", "timestamp", "content"}`` plus
  ``next_offset`` (``null`` on the last page) and ``total``, so a large graph need not come in one message.

Safe defaults (``serve_memory``): it binds loopback unless told; with an API key every request needs
``Authorization: Bearer <key>`` (401 otherwise, checked before anything else); a non-loopback bind without a key is
refused, since anyone who can reach it could read the whole graph (``web.auth.check_access``, the rule of every
amygdala server). ``Host`` and ``Origin`` are checked on every
bind address against an allow-list (DNS rebinding: 421 / 403): loopback names, the bound address, and whatever
``allowed_hosts`` / ``allowed_origins`` add (e.g. the public name clients use).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from typing_extensions import TypedDict  # pydantic needs it for output schemas on Python < 3.12

from amygdala.extraction.sources import MemoryNode, SourceError
from amygdala.web.auth import BearerAuth, check_access, is_loopback
from amygdala.web.ports import bind_error

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer
    from mcp.server.transport_security import TransportSecuritySettings

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


_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def _with_port(host: str) -> list[str]:
    """Host header patterns for ``host``: as given if it has a port, else with any port and with none (port 80)."""
    if host.startswith("[") and "]:" in host or host.count(":") == 1:
        return [host]
    bracketed = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return [f"{bracketed}:*", bracketed]


def transport_security(host: str, allowed_hosts: Sequence[str] = (),
                       allowed_origins: Sequence[str] = ()) -> TransportSecuritySettings:
    """Host/Origin validation for every bind address: loopback names, the bound address (unless a wildcard such as
    0.0.0.0) and the given extras. Origins default to http(s) on the allowed hosts; non-browser clients send none."""
    from mcp.server.transport_security import TransportSecuritySettings

    bound = [] if host in ("0.0.0.0", "::", "") or is_loopback(host) else [host]
    hosts = [pattern for name in (*_LOOPBACK_NAMES, *bound, *allowed_hosts) for pattern in _with_port(name)]
    origins = [f"{scheme}://{pattern}" for scheme in ("http", "https") for pattern in hosts]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=list(dict.fromkeys(hosts)),
                                     allowed_origins=list(dict.fromkeys([*origins, *allowed_origins])))


def memory_app(nodes: list[MemoryNode], *, host: str = "127.0.0.1", api_key: str | None = None,
               allowed_hosts: Sequence[str] = (), allowed_origins: Sequence[str] = ()) -> Any:
    """The ASGI app serving ``nodes`` at ``MCP_PATH``: Host/Origin checked, and the bearer key first if given."""
    app = build_memory_server(nodes).streamable_http_app(
        streamable_http_path=MCP_PATH, host=host,
        transport_security=transport_security(host, allowed_hosts, allowed_origins))
    return app if api_key is None else BearerAuth(app, api_key)


def serve_memory(nodes: list[MemoryNode], host: str = "127.0.0.1", port: int = 7777, *, api_key: str | None = None,
                 allowed_hosts: Sequence[str] = (), allowed_origins: Sequence[str] = ()) -> None:
    """Serve ``nodes`` over MCP streamable HTTP at ``http://host:port/mcp`` until interrupted (blocking), after
    ``check_serving``."""
    import uvicorn

    check_serving(host, port, api_key)
    app = memory_app(nodes, host=host, api_key=api_key, allowed_hosts=allowed_hosts, allowed_origins=allowed_origins)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def check_serving(host: str, port: int, api_key: str | None) -> None:
    """Refuse a port that is not one or is busy (``SourceError``), and what every server's key rule refuses
    (``web.auth.check_access``: an empty key, a non-loopback ``host`` without one): before anything is read."""
    if not 0 < port < 65536:
        raise SourceError(f"port {port} is not a TCP port: choose one within 1-65535")
    check_access(host, api_key, server="memory-serve", exposes="read the whole memory graph")
    check_port_free(host, port)


__all__ = ["MCP_PATH", "build_memory_server", "check_port_free", "check_serving", "graph_payload", "memory_app",
           "node_page", "serve_memory", "transport_security"]
