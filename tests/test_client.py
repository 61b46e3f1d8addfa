"""The HTTP client against a real server on loopback (the tiny model): completions and streams with readouts,
OpenAI-style errors as ``ServerError``, the SSE parser, and no torch needed to import it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from amygdala.forward.models import LoadedModel
from amygdala.serve import Engine, ServeOptions, create_app, serve_in_thread
from amygdala.serve.client import SSE_DONE, ReadoutClient, ServerError, iter_sse, iter_sse_data, raise_for_error

from readout_helpers import concept_artifact

KEY = "client-key"


@pytest.fixture(scope="module")
def urls(tiny_model: LoadedModel) -> Iterator[tuple[str, str]]:
    """(URL with the 3-concept artifact and an API key, URL without vectors or key) on free loopback ports."""
    keyed = create_app(Engine(tiny_model, concept_artifact(tiny_model)), ServeOptions(model_name="tiny", api_key=KEY))
    with serve_in_thread(keyed) as url, serve_in_thread(create_app(Engine(tiny_model, None), ServeOptions())) as bare:
        yield url, bare


def test_iter_sse_yields_json_payloads_until_done() -> None:
    lines = iter(["", ": keep-alive", 'data: {"a": 1}', "event: x", 'data:{"b": [2]}', "data: [DONE]", 'data: {"c": 3}'])
    assert list(iter_sse(lines)) == [{"a": 1}, {"b": [2]}]


def test_iter_sse_data_keeps_done_and_leaves_payloads_undecoded() -> None:
    """What a reader that must survive malformed chunks, or tell a cut stream from a finished one, needs."""
    lines = iter(["", 'data: {"a": 1}', "data: {not json", "data: [DONE]"])
    assert list(iter_sse_data(lines)) == ['{"a": 1}', "{not json", SSE_DONE]


@pytest.mark.parametrize(("response", "message"), [
    (httpx.Response(401, json={"error": {"message": "bad key", "code": "invalid_api_key"}}), "bad key"),
    (httpx.Response(400, json={"object": "error", "message": "flat body"}), "flat body"),
    (httpx.Response(500, json={"error": "just a string"}), "just a string"),
    (httpx.Response(502, text="<html>Bad Gateway</html>"), "<html>Bad Gateway</html>"),
])
def test_raise_for_error_reads_the_error_bodies_servers_send(response: httpx.Response, message: str) -> None:
    with pytest.raises(ServerError) as error:
        raise_for_error(response)
    assert error.value.status == response.status_code and error.value.error["message"] == message
    raise_for_error(httpx.Response(200, json={}))  # a success is not an error


def test_client_streams_what_it_completes_with_a_readout_per_token(urls: tuple[str, str]) -> None:
    with ReadoutClient(urls[0], api_key=KEY) as client:
        manifest = client.manifest()
        chunks = list(client.stream_completion("Today I feel", max_tokens=4, temperature=0))
        whole = client.complete("Today I feel", max_tokens=4, temperature=0)["choices"][0]
    assert manifest["concepts"] == ["joy", "anger", "fear"] and manifest["layers"] == [1, 3]
    assert [chunk.token_id for chunk in chunks] == whole["token_ids"] and len(chunks) == 4
    assert all(chunk.readout is not None and len(chunk.readout) == 2 and len(chunk.readout[0]) == 3
               for chunk in chunks)
    assert [chunk.readout for chunk in chunks] == whole["readout"]
    assert chunks[-1].finish_reason == "length" and chunks[0].index == 0


def test_server_errors_become_server_error_with_status_and_body(urls: tuple[str, str]) -> None:
    with ReadoutClient(urls[0], api_key="wrong") as client, pytest.raises(ServerError) as unauthorized:
        client.complete("Hi", max_tokens=1)
    assert unauthorized.value.status == 401
    with ReadoutClient(urls[0], api_key=KEY) as client, pytest.raises(ServerError) as bad:
        list(client.stream_completion("Hi", max_tokens=-1))
    assert bad.value.status == 400 and bad.value.error["param"] == "max_tokens" and str(bad.value).startswith("400: ")
    with ReadoutClient(urls[1]) as client, pytest.raises(ServerError) as missing:
        client.manifest()
    assert missing.value.status == 404


def test_client_module_needs_no_torch() -> None:
    path = Path(__file__).resolve().parents[1] / "src" / "amygdala" / "serve" / "client.py"
    code = ("import importlib.util, sys; spec = importlib.util.spec_from_file_location('client', sys.argv[1]); "
            "module = sys.modules['client'] = importlib.util.module_from_spec(spec); spec.loader.exec_module(module); "
            "assert 'torch' not in sys.modules and module.ReadoutClient")
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=120)
