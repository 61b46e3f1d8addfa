"""Every request ``amygdala serve`` can get, on a real loopback server: malformed ones get a 400 in the OpenAI
error shape naming the field (strict types, finite and bounded values, text that is text), none gets a 5xx
(property-based fuzzing of whole bodies), responses are strict JSON, a full queue is a 429 with Retry-After,
auth comes first, and an artifact that does not fit the model is refused before the server binds.

The model is the tiny random Llama (fast: these tests are about the transport, not the readout's quality) with
a diff-of-means artifact built from its own activations.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from amygdala.artifact import ArtifactError, Calibration, ReadoutArtifact, save_artifact
from amygdala.forward.models import LoadedModel
from amygdala.readout.generation import GenerationStep, SamplingOptions
from amygdala.readout.projection import MAX_STEER_ALPHA, ReadoutError, ReadoutOptions
from amygdala.serve import Engine, GenerationJob, ServeOptions, create_app, serve_in_thread

from mcp_servers import free_port
from readout_helpers import concept_artifact

KEY = "k3y"
AUTH = {"Authorization": f"Bearer {KEY}"}
ERROR_FIELDS = {"message", "type", "param", "code"}


def strict_json(text: str) -> Any:
    """Parse RFC 8259 JSON: ``NaN``, ``Infinity`` and ``-Infinity`` (which Python writes by default) are errors."""
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def tiny_artifact(tiny_model: LoadedModel) -> ReadoutArtifact:
    return concept_artifact(tiny_model)


@pytest.fixture(scope="module")
def served(tiny_model: LoadedModel, tiny_artifact: ReadoutArtifact) -> Iterator[tuple[str, Engine]]:
    engine = Engine(tiny_model, tiny_artifact, max_queued_jobs=2)
    options = ServeOptions(model_name="tiny", api_key=KEY, max_prompt_tokens=48, max_tokens=3, max_choices=2,
                           max_request_bytes=8192)
    with serve_in_thread(create_app(engine, options)) as url:
        yield url, engine


@pytest.fixture(scope="module")
def http(served: tuple[str, Engine]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served[0], headers=AUTH, timeout=60) as client:
        yield client


def assert_openai_error(response: httpx.Response, status: int, param: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = strict_json(response.text)["error"]
    assert set(error) == ERROR_FIELDS and error["message"], error
    if param is not None:
        assert error["param"] == param, error
    return error


# ---- malformed values: one 400 naming the field ----

@pytest.mark.parametrize(("body", "param"), [
    (b'{"prompt": "Hi", "seed": 18446744073709551617}', "seed"),  # > 64 bits: was a 500 (overflow)
    (b'{"prompt": "Hi", "seed": -9223372036854775809}', "seed"),
    (b'{"prompt": "Hi \\ud800 there"}', "prompt"),  # a lone surrogate: was a plain-text 500
    (b'{"prompt": ["ok", "\\udfff"]}', "prompt.1"),
    (b'{"prompt": "Hi", "stop": ["\\ud83d"]}', "stop.0"),
    (b'{"messages": [{"role": "user", "content": "x\\ud800"}]}', "messages.0.content"),
    (b'{"prompt": "Hi", "steer": {"joy": NaN}}', "steer.joy"),  # non-finite steering: was a 500 or NaN chunks
    (b'{"prompt": "Hi", "steer": {"joy": Infinity}}', "steer.joy"),
    (b'{"prompt": "Hi", "steer": {"fear": -Infinity}}', "steer.fear"),
    (b'{"prompt": "Hi", "steer": {"joy": 1e30}}', "steer.joy"),
    (b'{"prompt": "Hi", "steer": {"joy": 100.5}}', "steer.joy"),
    (b'{"prompt": "Hi", "temperature": NaN}', "temperature"),
    (b'{"prompt": "Hi", "top_p": Infinity}', "top_p"),
    (b'{"prompt": "Hi", "max_tokens": "2"}', "max_tokens"),  # strict types: were coerced
    (b'{"prompt": "Hi", "max_tokens": true}', "max_tokens"),
    (b'{"prompt": "Hi", "max_tokens": 2.0}', "max_tokens"),
    (b'{"prompt": "Hi", "readout_zscore": "yes"}', "readout_zscore"),
    (b'{"prompt": "Hi", "stream": 1}', "stream"),
    (b'{"prompt": "Hi", "n": "2"}', "n"),
    (b'{"prompt": "Hi", "temperature": "0.5"}', "temperature"),
    (b'{"prompt": "Hi", "stream_options": {"include_usage": "true"}}', "stream_options.include_usage"),
    (b'{"prompt": [1, true]}', "prompt"),
    (b'{"messages": [{"role": "user", "content": 5}]}', "messages.0.content"),
])
def test_malformed_values_get_a_400_naming_the_field(http: httpx.Client, body: bytes, param: str) -> None:
    """Regression: seeds over 64 bits and lone surrogates gave 500s, non-finite or huge steering alphas reached
    the model (500s, or a 200 streaming ``NaN``), and strings or booleans were coerced to numbers."""
    path = "/v1/chat/completions" if b"messages" in body else "/v1/completions"
    for stream in (False, True):
        sent = body.replace(b"{", b'{"stream": true, ', 1) if stream and b'"stream"' not in body else body
        error = assert_openai_error(http.post(path, content=sent, headers={"Content-Type": "application/json"}),
                                    400, param)
        assert error["type"] == "invalid_request_error"


def test_the_steering_bound_is_documented_and_inclusive(http: httpx.Client) -> None:
    for alpha in (MAX_STEER_ALPHA, -MAX_STEER_ALPHA):
        response = http.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 1, "steer": {"joy": alpha}})
        assert response.status_code == 200, response.text
    assert f"{MAX_STEER_ALPHA:g}" in http.post("/v1/completions", json={
        "prompt": "Hi", "steer": {"joy": MAX_STEER_ALPHA * 2}}).json()["error"]["message"]


def test_a_seed_anywhere_in_64_bits_replays(http: httpx.Client) -> None:
    body = {"prompt": "Hi", "max_tokens": 3, "temperature": 1.0, "seed": 2**63 - 1, "n": 2}
    first, second = (http.post("/v1/completions", json=body).json()["choices"] for _ in range(2))
    assert [c["token_ids"] for c in first] == [c["token_ids"] for c in second]


@pytest.mark.parametrize(("body", "where"), [
    (b'{"prompt": "Hi", "max_tokens": 2,}', "line 1, column 34 (character 33)"),
    (b'{"prompt": "Hi"\n "n": 2}', "line 2, column 2"),
    (b"{not json", "line 1, column 2"),
])
def test_malformed_json_says_what_is_wrong_and_where(http: httpx.Client, body: bytes, where: str) -> None:
    """Regression: the message read "32: JSON decode error" with param "32"."""
    error = assert_openai_error(http.post("/v1/completions", content=body), 400)
    assert error["message"].startswith("the request body is not valid JSON: ") and where in error["message"]
    assert error["param"] is None


# ---- strict JSON out ----

def tiny_std(artifact: ReadoutArtifact) -> ReadoutArtifact:
    """A valid artifact whose calibration std is so small that every z-score overflows to infinity."""
    calibration = artifact.calibration
    assert calibration is not None
    return dataclasses.replace(artifact, calibration=Calibration(
        calibration.mean, {layer: torch.full_like(std, 1e-44) for layer, std in calibration.std.items()}))


def test_non_finite_readouts_are_sent_as_null_never_as_nan(tiny_model: LoadedModel,
                                                          tiny_artifact: ReadoutArtifact) -> None:
    """Regression: a readout that overflowed was streamed as a literal ``Infinity``/``NaN`` (invalid JSON) and
    answered with a 500 when not streamed."""
    with serve_in_thread(create_app(Engine(tiny_model, tiny_std(tiny_artifact)), ServeOptions())) as url:
        body = {"prompt": "Hi", "max_tokens": 2, "temperature": 0, "readout_zscore": True}
        whole = httpx.post(f"{url}/v1/completions", json=body, timeout=60)
        assert whole.status_code == 200, whole.text
        readouts = [strict_json(whole.text)["choices"][0]["readout"]]
        with httpx.stream("POST", f"{url}/v1/completions", json=body | {"stream": True}, timeout=60) as streamed:
            lines = [line[6:] for line in streamed.iter_lines() if line.startswith("data: ")]
        assert lines[-1] == "[DONE]"
        readouts += [strict_json(line)["choices"][0]["readout"] for line in lines[:-1]]
    assert None in flatten(readouts), "the fixture should overflow some z-scores"
    assert all(value is None or isinstance(value, float) for value in flatten(readouts))


def flatten(value: Any) -> list[Any]:
    return [leaf for item in value for leaf in flatten(item)] if isinstance(value, list) else [value]


# ---- auth comes first ----

@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json", "/v1/models"])
def test_with_a_key_the_docs_and_schema_need_it_too(served: tuple[str, Engine], path: str) -> None:
    """Regression: /docs, /redoc and /openapi.json were served without the key."""
    url = served[0]
    assert_openai_error(httpx.get(url + path, timeout=30), 401)
    assert httpx.get(url + path, headers=AUTH, timeout=30).status_code == 200


@pytest.mark.parametrize("header", [f"bearer {KEY}", f"BEARER {KEY}", f"Bearer   {KEY}", f"bEaReR {KEY}"])
def test_the_auth_scheme_is_case_insensitive(served: tuple[str, Engine], header: str) -> None:
    """Regression: ``bearer KEY`` was refused; RFC 7235 makes the scheme case-insensitive."""
    response = httpx.post(served[0] + "/v1/completions", json={"prompt": "Hi", "max_tokens": 1},
                          headers={"Authorization": header}, timeout=60)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("body", [b"{not json", b'{"prompt": 5}', b'{"prompt": "' + b"x" * 9000 + b'"}'],
                         ids=["invalid-json", "wrong-type", "over-the-byte-limit"])
def test_auth_is_checked_before_the_body_is_read(served: tuple[str, Engine], body: bytes) -> None:
    """Regression: an unauthenticated request with a bad body got a 400 (it was parsed first); now 401."""
    response = httpx.post(served[0] + "/v1/completions", content=body, timeout=30,
                          headers={"Content-Type": "application/json", "Authorization": "Bearer nope"})
    assert_openai_error(response, 401)
    assert response.headers["www-authenticate"].lower().startswith("bearer")


# ---- a bounded queue ----

def test_a_full_queue_answers_429_with_retry_after(served: tuple[str, Engine], http: httpx.Client) -> None:
    """The engine (queue bound 2) is kept busy by a job whose consumer stalls; two more jobs wait. A request then
    gets a 429 in the OpenAI shape with Retry-After, and is served once the queue drains."""
    _, engine = served
    running, release = threading.Event(), threading.Event()

    def stall(event: GenerationStep | BaseException | None) -> None:
        running.set()
        release.wait(60)

    job = GenerationJob((1, 2, 3), SamplingOptions(max_tokens=1), False, ReadoutOptions())
    engine.submit(job, stall)
    try:
        assert running.wait(60)
        drained = [threading.Event() for _ in range(2)]
        for done in drained:
            engine.submit(job, lambda event, done=done: done.set() if event is None else None)
        refused = http.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 1})
        error = assert_openai_error(refused, 429)
        assert error["code"] == "rate_limit_exceeded" and "busy" in error["message"]
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        streamed = http.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 1, "stream": True})
        assert_openai_error(streamed, 429)  # refused before the 200 of a stream is sent
    finally:
        release.set()
    assert all(done.wait(60) for done in drained)  # the queue has drained
    assert http.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 1}).status_code == 200


# ---- the artifact must fit the model before anything binds ----

def misfits(artifact: ReadoutArtifact) -> dict[str, ReadoutArtifact]:
    wide = {layer: torch.nn.functional.normalize(torch.ones(3, 32), dim=1) for layer in artifact.layers}
    zero = {layer: torch.zeros_like(vectors) for layer, vectors in artifact.vectors.items()}
    return {"hidden size 32 != the model's 64": dataclasses.replace(artifact, hidden_size=32, vectors=wide,
                                                                    calibration=None),
            "layer(s) [9] out of range": dataclasses.replace(artifact, layers=(1, 9), calibration=None, vectors={
                1: artifact.vectors[1], 9: artifact.vectors[3]}),
            "must be unit length": dataclasses.replace(artifact, vectors=zero)}


def test_engine_refuses_an_artifact_that_does_not_fit(tiny_model: LoadedModel, tiny_artifact: ReadoutArtifact) -> None:
    for message, artifact in misfits(tiny_artifact).items():
        with pytest.raises((ArtifactError, ReadoutError), match=message.replace("(", r"\(").replace(")", r"\)")
                           .replace("[", r"\[").replace("]", r"\]")):
            Engine(tiny_model, artifact)


def test_serve_refuses_an_artifact_that_does_not_fit_before_it_binds(tiny_model_dir: Path, tiny_artifact:
                                                                     ReadoutArtifact, tmp_path: Path) -> None:
    """Regression: serve started with a misfit artifact (wrong hidden size, a layer out of range, zero vectors)
    and answered every generation with a 500; readout refused the same files up front."""
    for index, (message, artifact) in enumerate(misfits(tiny_artifact).items()):
        vectors = tmp_path / f"misfit{index}" / "readout.safetensors"
        save_artifact(artifact, vectors)
        port = free_port()
        done = subprocess.run([sys.executable, "-m", "amygdala.cli", "serve", "--vectors", str(vectors), "--model",
                               str(tiny_model_dir), "--port", str(port)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        error_lines = [line for line in done.stderr.splitlines() if line.startswith("amygdala: error: ")]
        assert len(error_lines) == 1 and message in error_lines[0], done.stderr
        assert "Uvicorn running" not in done.stderr and "Traceback" not in done.stderr


# ---- fuzzing: no request gets a 5xx ----

FIELDS = ["prompt", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "seed", "stop",
          "stream", "stream_options", "readout", "readout_zscore", "steer", "steer_layers", "echo", "logprobs",
          "model", "user", "logit_bias"]
lone_surrogates = st.characters(categories=["Cs"])
texts = st.text(max_size=8) | st.builds("".join, st.lists(st.sampled_from(["Hi", " ", "é", "\x00"]) | lone_surrogates,
                                                          min_size=1, max_size=4))
numbers = (st.integers(-(2**70), 2**70) | st.floats(allow_nan=True, allow_infinity=True)
           | st.sampled_from([0, 1, 2, -1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 1e30, 100.0, 100.5]))
scalars = st.none() | st.booleans() | numbers | texts
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(["joy", "fear", "role", "content", "type", "text", "include_usage"]) | texts, inner, max_size=3),
                      max_leaves=8)
#: Per field, values close to valid ones (so that the rest of the request is valid and the value reaches deep).
near_valid = {
    "prompt": texts | st.lists(st.integers(-2, 50000), max_size=4) | st.lists(texts, max_size=3),
    "messages": st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "tool"])},
                                               optional={"content": texts | values}), min_size=1, max_size=3),
    "steer": st.dictionaries(st.sampled_from(["joy", "fear", "anger", "nope"]), numbers, max_size=2),
    "steer_layers": st.lists(st.integers(-1, 5), max_size=3),
    "stop": texts | st.lists(texts, max_size=5),
    "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans() | values}),
}
BASES = [("completions", {"prompt": "Hi", "max_tokens": 2}), ("completions", {"prompt": [1, 2, 3]}),
         ("chat/completions", {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1})]


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid base request with up to three fields replaced by near-valid or wild values (JSON), or junk."""
    if draw(st.integers(0, 9)) == 0:
        junk = st.binary(max_size=40) | st.sampled_from([b"", b"[" * 3000, b"{" * 3000, b"\xff\xfe{}", b"null",
                                                          b'{"prompt": 1' + b"0" * 5000 + b"}"])
        return draw(st.sampled_from(["completions", "chat/completions"])), draw(junk)
    path, body = draw(st.sampled_from(BASES))
    for field in draw(st.lists(st.sampled_from(FIELDS), max_size=3, unique=True)):
        body = body | {field: draw(near_valid.get(field, numbers) | values)}
    text = json.dumps(body, allow_nan=True, ensure_ascii=draw(st.booleans()))
    return path, text.encode("utf-8", "surrogatepass")


def check_answer(response: httpx.Response, streamed: bool) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code != 200:
        assert_openai_error(response, response.status_code)
    elif streamed and response.headers["content-type"].startswith("text/event-stream"):
        lines = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
        assert lines and lines[-1] == "[DONE]", response.text[-300:]
        for line in lines[:-1]:
            assert "error" not in strict_json(line), line
    else:
        assert strict_json(response.text)["choices"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(request=requests())
def test_no_request_gets_a_5xx(http: httpx.Client, request: tuple[str, bytes]) -> None:
    """Property: any body (a valid request with fields replaced by wild values, or junk) gets a 200 with strict
    JSON (or a clean stream), or a 4xx in the OpenAI error shape; never a 5xx."""
    path, body = request
    response = http.post(f"/v1/{path}", content=body, headers={"Content-Type": "application/json"})
    event(f"status {response.status_code}")
    check_answer(response, streamed=b'"stream": true' in body)
