"""Security: loopback by default, bearer-token auth, bounded requests, no pickle anywhere, and a memory server that
serves its own file and nothing else.

The bind address is read from the kernel's socket table (``/proc/net/tcp``) of a real ``amygdala serve`` and
``amygdala memory-serve`` subprocess started without ``--host``; request bounds are checked on a real loopback
server; "no pickle" is checked twice: in the source text, and with an audit hook (``pickle.find_class``) around a
whole extract -> train (cached, twice) -> readout -> export run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client

from amygdala.extraction.sources import MemoryNode
from amygdala.extraction.sources.graph_file import write_graph_file
from amygdala.forward.models import LoadedModel
from amygdala.serve import Engine, ServeOptions, create_app, serve_in_thread

from mcp_servers import free_port, memory_serve

REPO = Path(__file__).resolve().parents[1]
KEY = "s3cret-key"


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket in LISTEN state on ``port``, from the kernel's TCP tables."""
    decoded = {"0100007F": "127.0.0.1", "00000000": "0.0.0.0", "00000000000000000000000001000000": "::1",
               "00000000000000000000000000000000": "::"}
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:
                found.add(decoded.get(address, address))
    return found


def wait_for_http(url: str, process: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else process.returncode
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer in {timeout_s} s")


@pytest.fixture(scope="module")
def served_cli(tiny_model_dir: Path) -> Iterator[tuple[str, int]]:
    """`amygdala serve --api-key KEY` on the tiny model, started without --host."""
    if not Path("/proc/net/tcp").exists():
        pytest.skip("needs Linux /proc/net/tcp to read the bind address")
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "amygdala.cli", "serve", "--model", str(tiny_model_dir),
                                "--port", str(port), "--api-key", KEY], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/v1/models", process)
        yield f"http://127.0.0.1:{port}", port
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_serve_binds_loopback_by_default(served_cli: tuple[str, int]) -> None:
    assert listening_addresses(served_cli[1]) == {"127.0.0.1"}


def test_memory_serve_binds_loopback_by_default(tmp_path: Path) -> None:
    graph = write_graph_file([MemoryNode("a", "journal", "", "hello\ncalm:9")], tmp_path / "graph.jsonl")
    with memory_serve(graph) as url:
        assert listening_addresses(int(url.split(":")[2].split("/")[0])) == {"127.0.0.1"}


@pytest.mark.parametrize("route", ["GET /v1/models", "GET /v1/readout/manifest", "POST /v1/completions",
                                   "POST /v1/chat/completions"])
def test_api_key_flag_requires_the_bearer_token_on_every_route(served_cli: tuple[str, int], route: str) -> None:
    method, path = route.split()
    url = served_cli[0] + path
    body = {"prompt": "Hi", "max_tokens": 1} if path.endswith("/completions") else None
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}, {"Authorization": f"Basic {KEY}"},
                    {"Authorization": f"Bearer {KEY}x"}):
        response = httpx.request(method, url, json=body, headers=headers, timeout=30)
        assert response.status_code == 401, (headers, response.text)
        assert response.json()["error"]["code"] == "invalid_api_key"
    good = httpx.request(method, url, json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
    assert good.status_code != 401


# ---- request bounds ----

@pytest.fixture(scope="module")
def bounded_url(tiny_model: LoadedModel) -> Iterator[str]:
    options = ServeOptions(max_prompt_tokens=32, max_tokens=8, max_choices=2, max_request_bytes=4096)
    with serve_in_thread(create_app(Engine(tiny_model, None), options)) as url:
        yield url


@pytest.mark.parametrize(("body", "param", "message"), [
    ({"prompt": "word " * 60}, "prompt", r"the prompt has \d+ tokens; this server allows 32"),
    ({"messages": [{"role": "user", "content": "word " * 60}]}, "prompt", r"this server allows 32"),
    ({"prompt": "Hi", "max_tokens": 9}, "max_tokens", r"max_tokens 9 exceeds this server's limit 8"),
    ({"prompt": "Hi", "n": 3}, "n", r"3 choices requested \(n x prompts\); this server allows 2"),
    ({"prompt": ["Hi", "Yo", "Hey"]}, "n", r"3 choices requested"),
])
def test_oversized_requests_get_a_400_naming_the_limit(bounded_url: str, body: dict[str, Any], param: str,
                                                       message: str) -> None:
    path = "/v1/chat/completions" if "messages" in body else "/v1/completions"
    response = httpx.post(bounded_url + path, json=body, timeout=30)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param and re.search(message, error["message"]), error


def test_a_body_over_the_byte_limit_is_refused_before_it_is_parsed(bounded_url: str) -> None:
    """Regression: no bound on the body, so a huge prompt was read and tokenised whole (seconds of a blocked
    event loop per few MB) before the token limit refused it."""
    big = json.dumps({"prompt": "word " * 2000}).encode()
    declared = httpx.post(bounded_url + "/v1/completions", content=big, timeout=30,
                          headers={"Content-Type": "application/json"})

    def chunks() -> Iterator[bytes]:
        yield from (big[start:start + 1000] for start in range(0, len(big), 1000))

    streamed = httpx.post(bounded_url + "/v1/completions", content=chunks(), timeout=30,
                          headers={"Content-Type": "application/json"})
    for response in (declared, streamed):
        assert response.status_code == 413, response.text
        error = response.json()["error"]
        assert error["code"] == "request_too_large" and "at most 4096" in error["message"]
    fine = httpx.post(bounded_url + "/v1/completions", json={"prompt": "Hi", "max_tokens": 1}, timeout=30)
    assert fine.status_code == 200 and len(fine.json()["choices"][0]["token_ids"]) == 1


def test_default_byte_limit_scales_with_the_prompt_limit() -> None:
    assert ServeOptions().request_byte_limit() == 1 << 20
    assert ServeOptions(max_prompt_tokens=100_000).request_byte_limit() == 6_400_000
    assert ServeOptions(max_request_bytes=10).request_byte_limit() == 10


# ---- no pickle ----

_PICKLE_PATTERNS = {
    "pickle module": r"\b(import|from) (c?pickle|dill|cloudpickle|joblib)\b",
    "pickle call": r"\bpickle\.(loads?|dumps?|Unpickler)\b",
    "torch.load without weights_only=True": r"torch\.load\((?![^)]*weights_only\s*=\s*True)",
    "torch.save": r"torch\.save\(",
    "numpy allow_pickle": r"allow_pickle\s*=\s*True",
}


def test_no_pickle_in_the_source_tree() -> None:
    this_file = Path(__file__).resolve()
    found = []
    for path in sorted([*REPO.glob("src/**/*.py"), *REPO.glob("tests/**/*.py"), *REPO.glob("benchmarks/**/*.py")]):
        if path.resolve() == this_file or "node_modules" in path.parts:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            found += [f"{path.relative_to(REPO)}:{number}: {name}" for name, pattern in _PICKLE_PATTERNS.items()
                      if re.search(pattern, line)]
    assert not found, found
    shipped = [p.name for p in (REPO / "src" / "amygdala").rglob("*") if p.suffix in {".pkl", ".pickle", ".pt", ".pth",
                                                                                      ".bin", ".npy", ".joblib"}]
    assert not shipped


def test_no_pickle_is_loaded_by_a_whole_run(tiny_model_dir: Path, tmp_path: Path) -> None:
    """An audit hook records every ``pickle.find_class`` (raised by any unpickling) through a full run; a
    deliberate pickle round trip at the end proves the hook sees them."""
    script = f"""
import pickle, sys
events = []
sys.addaudithook(lambda event, args: events.append(args[:2]) if event == "pickle.find_class" else None)
from amygdala.cli import main
out, model = {str(tmp_path)!r}, {str(tiny_model_dir)!r}
train = ["train", "--training-data-dir", out + "/examples", "--model", model, "--pooling", "mean", "--target-layers",
         "1,3", "--cache-dir", out + "/cache", "--output", out + "/readout.safetensors", "--no-progress"]
open(out + "/texts.txt", "w").write("A calm evening.\\n")
runs = [["extract", "--output-dir", out + "/examples", "--emotions", "calm,warmth", "--max-examples-per-emotion", "12"],
        train, train, ["readout", "--vectors", out + "/readout.safetensors", "--model", model, "--input",
        out + "/texts.txt", "--output", out + "/readout.jsonl", "--no-progress"],
        ["export", "gguf", "--vectors", out + "/readout.safetensors", "--concept", "calm", "--output", out + "/c.gguf"]]
for argv in runs:
    assert main(argv) == 0, argv
print("run", events)
pickle.loads(pickle.dumps(__import__("collections").OrderedDict()))
print("control", events)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in done.stdout.splitlines()
             if line.startswith(("run ", "control "))}
    assert lines["run"] == "[]"
    assert "OrderedDict" in lines["control"]


# ---- the memory server serves its own file only ----

async def _probe_memory_server(url: str, secret: Path) -> dict[str, Any]:
    async with Client(url) as client:
        tools = (await client.list_tools()).tools
        calls = [await client.call_tool(tool.name, {"path": str(secret), "file": str(secret), "uri": secret.as_uri(),
                                                    "name": str(secret)}) for tool in tools]
        unknown = [await client.call_tool(name, {"path": str(secret)})
                   for name in ("read_file", "open_nodes", "search_nodes", "create_entities")]
        resources = (await client.list_resources()).resources
        templates = (await client.list_resource_templates()).resource_templates
        try:
            await client.read_resource(secret.as_uri())
            read_secret = True
        except Exception:  # noqa: BLE001 - any refusal will do; a success is the failure
            read_secret = False
    return {"schemas": {tool.name: tool.input_schema for tool in tools}, "calls": calls, "unknown": unknown,
            "resources": resources + templates, "read_secret": read_secret}


def test_memory_server_serves_only_the_file_it_was_started_with(tmp_path: Path) -> None:
    """No tool, argument or resource reaches another file; and the graph is read once, at start, so replacing
    the served file (even by a link to a secret) changes nothing."""
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CANARY\ncalm:9\n")
    nodes = [MemoryNode(f"k{i}", "journal", "", f"Public entry {i}.\ncalm:{i}") for i in range(3)]
    graph = write_graph_file(nodes, tmp_path / "graph.jsonl")
    with memory_serve(graph) as url:
        graph.unlink()
        graph.symlink_to(secret)
        found = anyio.run(_probe_memory_server, url, secret)
    assert set(found["schemas"]) == {"read_graph", "list_nodes"}
    for schema in found["schemas"].values():
        assert all(spec.get("type") == "integer" for spec in schema.get("properties", {}).values()), schema
    answers = [block.text for result in found["calls"] for block in result.content]
    assert all("TOP-SECRET-CANARY" not in answer for answer in answers)
    assert all("Public entry 2." in answer for answer in answers)
    assert all(result.is_error and "Unknown tool" in result.content[0].text for result in found["unknown"])
    assert found["resources"] == [] and not found["read_secret"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("env_key, flag", [("", []), (None, ["--api-key", " "])])
def test_an_empty_api_key_is_refused_rather_than_serving_open(env_key: str | None, flag: list[str],
                                                                capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: AMYGDALA_API_KEY="" used to start a server that required no token at all."""
    from amygdala.cli import main

    if env_key is None:
        monkeypatch.delenv("AMYGDALA_API_KEY", raising=False)
    else:
        monkeypatch.setenv("AMYGDALA_API_KEY", env_key)
    assert main(["serve", "--model", "smollm2", "--port", str(free_port()), *flag]) != 0
    assert "API key is empty" in capsys.readouterr().err


# ---- memory-serve: bearer key, refusal of an open non-loopback bind, Host/Origin on every address ----

MCP_INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "probe", "version": "1"}}}
MCP_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


async def _read_graph_with(url: str, headers: dict[str, str]) -> list[str]:
    """read_graph through the real MCP client (official SDK), sending ``headers`` on every request."""
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    async with httpx2.AsyncClient(headers=headers, timeout=30) as http, \
            Client(streamable_http_client(url, http_client=http)) as client:
        result = await client.call_tool("read_graph", {})
    return [entity["name"] for entity in result.structured_content["entities"]]


def read_graph_with(url: str, headers: dict[str, str]) -> list[str]:
    return anyio.run(_read_graph_with, url, headers)


@pytest.fixture
def memory_graph(tmp_path: Path) -> Path:
    return write_graph_file([MemoryNode(f"k{i}", "journal", "", f"Entry {i}.\ncalm:{i}") for i in range(3)],
                            tmp_path / "graph.jsonl")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_memory_serve_refuses_a_non_loopback_bind_without_a_key(memory_graph: Path, host: str) -> None:
    """Regression: ``memory-serve --host 0.0.0.0`` served the whole memory graph to anyone, without a word."""
    port = free_port()
    done = subprocess.run([sys.executable, "-m", "amygdala.cli", "memory-serve", "--file", str(memory_graph),
                           "--host", host, "--port", str(port)], capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if k != "AMYGDALA_API_KEY"})
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert f"memory-serve on {host} without an API key" in done.stderr and "--api-key" in done.stderr
    assert not listening_addresses(port)


@pytest.mark.parametrize("how", ["flag", "env"])
def test_memory_serve_with_a_key_answers_the_real_mcp_client_only_with_it(memory_graph: Path, how: str) -> None:
    """With ``--api-key`` (or AMYGDALA_API_KEY) every request needs the bearer key: the official MCP client gets
    the graph with it (any scheme case), a 401 without or with a wrong one; extract's own MCP source sends it."""
    from amygdala.extraction.sources import SourceError
    from amygdala.extraction.sources.mcp_client import read_mcp_graph

    extra, env = (["--api-key", KEY], None) if how == "flag" else ([], {"AMYGDALA_API_KEY": KEY})
    with memory_serve(memory_graph, *extra, env=env) as url:
        assert read_graph_with(url, {"Authorization": f"Bearer {KEY}"}) == ["k0", "k1", "k2"]
        assert read_graph_with(url, {"Authorization": f"bearer {KEY}"}) == ["k0", "k1", "k2"]
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
            refused = httpx.post(url, json=MCP_INITIALIZE, headers=MCP_HEADERS | headers, timeout=30)
            assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key", headers
            with pytest.raises(BaseException):  # noqa: B017 - the SDK wraps the 401 in an exception group
                read_graph_with(url, headers)
        assert [node.key for node in read_mcp_graph(url=url, api_key=KEY)] == ["k0", "k1", "k2"]
        with pytest.raises(SourceError, match=r"\(HTTP 401\): the server wants an API key: pass --memory-mcp-api-key"):
            read_mcp_graph(url=url)


def test_memory_serve_checks_host_and_origin_on_every_bind_address(memory_graph: Path) -> None:
    """Regression: bound to 0.0.0.0, memory-serve accepted any ``Host`` header (DNS rebinding), while on 127.0.0.1
    the same request got a 421. Now the allow-list holds on every address, and ``--allowed-host`` extends it."""
    with memory_serve(memory_graph, "--host", "0.0.0.0", "--api-key", KEY, "--allowed-host", "memory.example",
                      "--allowed-origin", "https://app.example") as url:
        port = int(url.split(":")[2].split("/")[0])
        auth = MCP_HEADERS | {"Authorization": f"Bearer {KEY}"}
        rebound = httpx.post(url, json=MCP_INITIALIZE, headers=auth | {"Host": f"evil.example:{port}"}, timeout=30)
        assert rebound.status_code == 421, rebound.text
        foreign = httpx.post(url, json=MCP_INITIALIZE, headers=auth | {"Origin": "https://evil.example"}, timeout=30)
        assert foreign.status_code == 403, foreign.text
        bearer = {"Authorization": f"Bearer {KEY}"}
        assert read_graph_with(url, bearer) == ["k0", "k1", "k2"]  # loopback names are always allowed
        assert read_graph_with(url, bearer | {"Host": f"memory.example:{port}"}) == ["k0", "k1", "k2"]
        assert read_graph_with(url, bearer | {"Origin": "https://app.example"}) == ["k0", "k1", "k2"]


def test_memory_serve_on_loopback_still_refuses_a_foreign_host(memory_graph: Path) -> None:
    with memory_serve(memory_graph) as url:
        port = int(url.split(":")[2].split("/")[0])
        rebound = httpx.post(url, json=MCP_INITIALIZE, headers=MCP_HEADERS | {"Host": f"evil.example:{port}"},
                             timeout=30)
        assert rebound.status_code == 421
        assert read_graph_with(url, {}) == ["k0", "k1", "k2"]
