"""Real MCP memory servers for the source and CLI tests: the pinned official npm server and `amygdala memory-serve`.

Without Node.js or the npm install (``cd tests/node && npm ci``) the official-server tests skip locally, and fail
when ``CI`` is set, so a CI run can never pass without them.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).resolve().parent / "node"
OFFICIAL_SERVER_JS = NODE_DIR / "node_modules" / "@modelcontextprotocol" / "server-memory" / "dist" / "index.js"


def official_server_command() -> str:
    """The shell command starting the pinned official memory server (it reads ``MEMORY_FILE_PATH``)."""
    node = shutil.which("node")
    problem = ("Node.js is not on PATH" if node is None else
               f"{OFFICIAL_SERVER_JS} is missing: run `npm ci` in {NODE_DIR}" if not OFFICIAL_SERVER_JS.is_file()
               else None)
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the official MCP memory server is required in CI: {problem}")
        pytest.skip(f"official MCP memory server unavailable: {problem}")
    return f"{shlex.quote(str(node))} {shlex.quote(str(OFFICIAL_SERVER_JS))}"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read().decode(errors="replace") if process.stdout else ""
            raise RuntimeError(f"amygdala memory-serve exited with {process.returncode}: {output[-500:]}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"amygdala memory-serve did not listen on port {port} within {timeout_s} s")


@contextmanager
def memory_serve(graph_file: Path | None = None, *extra: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """Run ``amygdala memory-serve`` (with ``extra`` arguments) as a real subprocess on a free port; yields its MCP
    URL on loopback."""
    port = free_port()
    argv = [sys.executable, "-m", "amygdala.cli", "memory-serve", "--port", str(port), *extra]
    if graph_file is not None:
        argv += ["--file", str(graph_file)]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env=None if env is None else {**os.environ, **env})
    try:
        _wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


_LOG_SERVER = '''\
import json, sys
from mcp.server.mcpserver import MCPServer

rows = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8") if line.strip()]
server = MCPServer("raw-log-memory", log_level="WARNING")


@server.tool(name="list_nodes", description="The raw log, a page at a time")
def list_nodes(offset: int = 0, limit: int = 500) -> dict:
    end = min(offset + limit, len(rows))
    return {"nodes": rows[offset:end], "next_offset": end if end < len(rows) else None, "total": len(rows)}


server.run("stdio")
'''


def log_server_command(rows_file: Path) -> str:
    """The command of a stdio MCP server (official SDK) whose ``list_nodes`` pages through a JSONL file's raw rows,
    every version of every node as written: a stand-in for a third-party store that does not resolve its log."""
    script = rows_file.with_name("raw_log_server.py")
    script.write_text(_LOG_SERVER, encoding="utf-8")
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(script))} {shlex.quote(str(rows_file))}"
