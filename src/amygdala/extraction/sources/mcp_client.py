"""Memory source: any MCP memory server, through the official ``mcp`` SDK (streamable HTTP URL or stdio command).

The server's paged ``list_nodes`` tool (amygdala's own ``memory-serve``) is used when offered, else its
``read_graph`` tool (the official ``@modelcontextprotocol/server-memory``): each entity is one node, with
name = key, entityType = node type and its observations joined with newlines = content (timestamp empty).
Rows are read by the same rules as a graph file (``records``), and rows carrying ``uuid``/``version``/``deleted``
are resolved as a versioned log (``node_log``), page by page.
"""

from __future__ import annotations

import json
import os
import shlex
import tempfile
from collections.abc import Callable, Mapping
from typing import IO, Any, TextIO

import anyio

from amygdala.extraction.sources import MemoryGraph, MemoryNode, SourceError
from amygdala.extraction.sources.node_log import NodeLog
from amygdala.extraction.sources.records import NodeRecord, entity_record, parse_row

READ_GRAPH_TOOL = "read_graph"
LIST_NODES_TOOL = "list_nodes"
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_PAGE_SIZE = 500


class _ToolFailure(Exception):
    """A tool answered, but with an error or a result of the wrong shape (turned into ``SourceError``)."""


def _structured(result: Any, tool: str) -> Mapping[str, Any]:
    """The JSON object a tool returned: its structured content, else the JSON of its first text block."""
    text = " ".join(getattr(block, "text", "") for block in result.content).strip()
    if result.is_error:
        raise _ToolFailure(f"tool {tool} failed: {text or 'no message'}")
    if isinstance(result.structured_content, Mapping):
        return result.structured_content
    try:
        payload = json.loads(text)
    except json.JSONDecodeError:
        raise _ToolFailure(f"tool {tool} returned no JSON object: {text[:80]!r}") from None
    if not isinstance(payload, Mapping):
        raise _ToolFailure(f"tool {tool} returned {type(payload).__name__}, expected a JSON object")
    return payload


def _add_rows(log: NodeLog, rows: list[object], tool: str, first: int,
              parse: Callable[[Any], NodeRecord | None]) -> None:
    """Parse rows ``first``, ``first + 1``... of a tool's answer into ``log``; a bad row fails the read."""
    for index, row in enumerate(rows, start=first):
        if not isinstance(row, Mapping):
            raise _ToolFailure(f"tool {tool} row {index} is not a JSON object")
        try:
            record = parse(row)
            if record is not None:
                log.add(record, f"tool {tool} row {index}")
        except ValueError as exc:
            raise _ToolFailure(f"tool {tool} row {index}: {exc}") from None


async def _tool_names(client: Any) -> set[str]:
    names: set[str] = set()
    cursor: str | None = None
    for _ in range(1000):  # a paginator that never ends must not hang the read
        listing = await client.list_tools(cursor=cursor)
        names |= {tool.name for tool in listing.tools}
        cursor = listing.next_cursor
        if not cursor:
            break
    return names


async def _read_graph(client: Any, log: NodeLog) -> None:
    payload = _structured(await client.call_tool(READ_GRAPH_TOOL, {}), READ_GRAPH_TOOL)
    entities = payload.get("entities")
    if not isinstance(entities, list):
        raise _ToolFailure(f"tool {READ_GRAPH_TOOL} returned no 'entities' list")
    _add_rows(log, entities, READ_GRAPH_TOOL, 0, entity_record)


async def _list_nodes(client: Any, log: NodeLog, page_size: int) -> None:
    offset: int | None = 0
    while offset is not None:
        payload = _structured(await client.call_tool(LIST_NODES_TOOL, {"offset": offset, "limit": page_size}),
                              LIST_NODES_TOOL)
        rows, next_offset = payload.get("nodes"), payload.get("next_offset")
        if not isinstance(rows, list) or not (next_offset is None or isinstance(next_offset, int)):
            raise _ToolFailure(f"tool {LIST_NODES_TOOL} must return 'nodes' (a list) and 'next_offset' (int or null)")
        if next_offset is not None and next_offset <= offset:
            raise _ToolFailure(f"tool {LIST_NODES_TOOL} returned next_offset {next_offset} after offset {offset}")
        _add_rows(log, rows, LIST_NODES_TOOL, offset, parse_row)  # node rows; entity-shaped rows work too
        offset = next_offset


async def _read_nodes(target: Any, log: NodeLog, page_size: int) -> None:
    from mcp import Client

    async with Client(target) as client:
        tools = await _tool_names(client)
        if LIST_NODES_TOOL in tools:
            return await _list_nodes(client, log, page_size)
        if READ_GRAPH_TOOL in tools:
            return await _read_graph(client, log)
        raise _ToolFailure(f"the server offers neither {READ_GRAPH_TOOL} nor {LIST_NODES_TOOL} "
                           f"(its tools: {', '.join(sorted(tools)) or 'none'})")


def _innermost(exc: BaseException) -> BaseException:
    """The first leaf of an exception group (anyio wraps transport errors in task-group groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _reason(exc: BaseException, errlog: IO[str] | None) -> str:
    leaf = _innermost(exc)
    if isinstance(leaf, TimeoutError):
        reason = "no answer in time"
    else:
        reason = str(leaf) or type(leaf).__name__
    if errlog is not None:
        errlog.seek(0)
        said = [line.strip() for line in errlog.read().splitlines() if line.strip()]
        if said:
            reason += f" (server stderr: {said[-1][:200]})"
    return " ".join(reason.split())


def _stdio_target(command: str, errlog: TextIO) -> Any:
    from mcp import StdioServerParameters
    from mcp.client.stdio import stdio_client

    argv = shlex.split(command)
    if not argv:
        raise SourceError("--memory-mcp-command is empty: give the server command, e.g. 'npx -y "
                          "@modelcontextprotocol/server-memory'")
    # The whole environment is passed on, so e.g. MEMORY_FILE_PATH reaches the server.
    params = StdioServerParameters(command=argv[0], args=argv[1:], env=dict(os.environ))
    return stdio_client(params, errlog=errlog)


_HTTP_HINTS = {401: "the server wants an API key: pass --memory-mcp-api-key (or AMYGDALA_MEMORY_API_KEY)",
               403: "the server refused this client's Origin", 421: "the server does not accept this host name "
               "(memory-serve --allowed-host adds one)"}


def _http_target(url: str, api_key: str | None, refusals: list[int]) -> Any:
    """The streamable HTTP transport to ``url``, sending ``Authorization: Bearer <api_key>`` when given; HTTP
    refusals (401, 403, 421) are noted in ``refusals``, since the SDK reports them only as "an error response"."""
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    async def note(response: Any) -> None:
        if response.status_code in _HTTP_HINTS:
            refusals.append(response.status_code)

    client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {api_key}"} if api_key else None,
                                timeout=httpx2.Timeout(30.0, read=300.0),  # the SDK's own defaults
                                event_hooks={"response": [note]})
    return streamable_http_client(url, http_client=client)


def read_mcp_memory(*, url: str | None = None, command: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                    page_size: int = DEFAULT_PAGE_SIZE, api_key: str | None = None) -> MemoryGraph:
    """Read an MCP memory server at a streamable HTTP ``url`` (``api_key``: sent as a bearer token, e.g. to
    ``amygdala memory-serve --api-key``) or started with a stdio ``command``, its log resolved."""
    if (url is None) == (command is None):
        raise SourceError("give exactly one MCP memory server: a URL (--memory-mcp-url) or a command "
                          "(--memory-mcp-command)")
    where = f"MCP memory server {url}" if url is not None else f"MCP memory server command {command!r}"
    log = NodeLog()
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as errlog:
        refusals: list[int] = []
        target = _http_target(url, api_key, refusals) if url is not None else _stdio_target(str(command), errlog)

        async def run() -> None:
            with anyio.fail_after(timeout_s):
                await _read_nodes(target, log, page_size)

        try:
            anyio.run(run)
        except Exception as exc:  # noqa: BLE001 - every transport/protocol failure becomes one SourceError
            stderr = errlog if command is not None else None
            hint = ("" if isinstance(_innermost(exc), _ToolFailure) else
                    f" (HTTP {refusals[-1]}): {_HTTP_HINTS[refusals[-1]]}" if refusals else
                    "; check that the server is running there" if url is not None else
                    "; check that this command starts an MCP memory server on stdio")
            raise SourceError(f"cannot read the memory graph from {where}: {_reason(exc, stderr)}{hint}") from exc
    return log.graph(where)


def read_mcp_graph(*, url: str | None = None, command: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                   page_size: int = DEFAULT_PAGE_SIZE, api_key: str | None = None) -> list[MemoryNode]:
    """The current nodes of an MCP memory server (``read_mcp_memory`` without the counts)."""
    return list(read_mcp_memory(url=url, command=command, timeout_s=timeout_s, page_size=page_size,
                                api_key=api_key).nodes)


__all__ = ["LIST_NODES_TOOL", "READ_GRAPH_TOOL", "read_mcp_graph", "read_mcp_memory"]
