"""The bearer key and the no-key policy (``web.auth``): one rule on every server, checked on real loopback servers
(``amygdala serve``'s app and ``memory-serve``'s app) and through both CLI commands."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from amygdala.cli import main
from amygdala.extraction.memory_server import memory_app
from amygdala.extraction.sources import MemoryNode
from amygdala.forward.models import LoadedModel
from amygdala.serve import Engine, ServeOptions, create_app, serve_in_thread
from amygdala.web.auth import AccessError, BearerAuth, access_problem, requested_key, unauthorized_body

from mcp_servers import free_port

KEY = "s3cret-key"
MCP_INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "probe", "version": "1"}}}
MCP_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
#: A request each server answers with a 2xx when the key is right: (method, path, json body, extra headers).
PROBES = {"serve": ("GET", "/v1/models", None, {}), "memory-serve": ("POST", "/mcp", MCP_INITIALIZE, MCP_HEADERS)}


@pytest.mark.parametrize(("host", "key", "refused"), [
    ("127.0.0.1", None, None), ("localhost", None, None), ("::1", None, None), ("127.0.0.1", KEY, None),
    ("0.0.0.0", KEY, None), ("0.0.0.0", None, "without an API key"), ("::", None, "without an API key"),
    ("192.168.1.5", None, "without an API key"), ("127.0.0.1", "", "the API key is empty"),
    ("0.0.0.0", "  ", "the API key is empty")])
def test_access_problem_is_one_rule_for_every_server(host: str, key: str | None, refused: str | None) -> None:
    for server in PROBES:
        problem = access_problem(host, key, server=server, exposes="do things")
        assert (problem is None) if refused is None else (refused in problem and "--api-key" in problem), problem


def test_requested_key_reads_the_environment_even_when_empty() -> None:
    """Regression: click treats AMYGDALA_API_KEY="" as unset, so an empty key used to start an open server."""
    assert requested_key(None, {"AMYGDALA_API_KEY": ""}) == ""
    assert requested_key("flag", {"AMYGDALA_API_KEY": "env"}) == "flag" and requested_key(None, {}) is None


def test_bearer_auth_refuses_an_empty_key() -> None:
    with pytest.raises(AccessError, match="the API key is empty"):
        BearerAuth(object(), " ")


@pytest.fixture(scope="module")
def keyed_servers(tiny_model: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Both servers' real apps with the key, each on a loopback port."""
    nodes = [MemoryNode("k0", "journal", "", "Entry.\ncalm:3")]
    serve_app = create_app(Engine(tiny_model, None), ServeOptions(model_name="tiny", api_key=KEY))
    with serve_in_thread(serve_app) as serve_url, serve_in_thread(memory_app(nodes, api_key=KEY)) as memory_url:
        yield {"serve": serve_url, "memory-serve": memory_url}


@pytest.mark.parametrize("server", list(PROBES))
def test_every_server_answers_a_wrong_key_with_the_same_401(keyed_servers: dict[str, str], server: str) -> None:
    method, path, body, extra = PROBES[server]
    url = keyed_servers[server] + path
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}, {"Authorization": f"Basic {KEY}"},
                    {"Authorization": f"Bearer {KEY}x"}, {"Authorization": "Bearer"}):
        refused = httpx.request(method, url, json=body, headers=extra | headers, timeout=30)
        assert refused.status_code == 401, (headers, refused.text)
        assert refused.json() == unauthorized_body() and refused.headers["www-authenticate"].startswith("Bearer")
    for scheme in ("Bearer", "bearer", "BEARER"):
        good = httpx.request(method, url, json=body, headers=extra | {"Authorization": f"{scheme}  {KEY}"},
                             timeout=30)
        assert good.status_code == 200, good.text


@pytest.mark.timeout(120)
@pytest.mark.parametrize("command", ["serve", "memory-serve"])
def test_every_server_command_refuses_an_open_non_loopback_bind(command: str, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Regression: ``serve --host 0.0.0.0`` without a key only logged a warning and served the model to anyone,
    where ``memory-serve`` refused the same bind."""
    monkeypatch.delenv("AMYGDALA_API_KEY", raising=False)
    extra = ["--model", "smollm2"] if command == "serve" else []
    assert main([command, "--host", "0.0.0.0", "--port", str(free_port()), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"amygdala: error: {command} on 0.0.0.0 without an API key") and err.count("\n") == 1
    assert "--api-key" in err


@pytest.mark.timeout(120)
@pytest.mark.parametrize("command", ["serve", "memory-serve"])
def test_every_server_command_refuses_an_empty_key(command: str, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.setenv("AMYGDALA_API_KEY", "")
    extra = ["--model", "smollm2"] if command == "serve" else []
    assert main([command, "--port", str(free_port()), *extra]) == 2
    err = capsys.readouterr().err
    assert err == "amygdala: error: the API key is empty: give a non-empty --api-key or unset AMYGDALA_API_KEY\n"
