"""The OpenAI-compatible server on a real loopback port: parity with the offline readout, streaming vs not,
concurrency, cancellation on disconnect, errors and auth."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import torch

from amygdala.artifact import ReadoutArtifact, calibration_json
from amygdala.forward.models import LoadedModel
from amygdala.readout.attach import read_ids
from amygdala.serve import Engine, ServeOptions, create_app, serve_in_thread
from amygdala.serve.client import ReadoutClient, ServerError
from amygdala.web.payloads import manifest_payload

from readout_helpers import concept_artifact, zscored_by_calibration

pytestmark = pytest.mark.slow
KEY = "test-key"
PROMPT = "Today I feel"
CHAT = [{"role": "user", "content": "Say something kind."}]


@pytest.fixture(scope="module")
def smol_artifact(smollm2: LoadedModel) -> ReadoutArtifact:
    return concept_artifact(smollm2)


@pytest.fixture(scope="module")
def server(smollm2: LoadedModel, smol_artifact: ReadoutArtifact) -> Iterator[tuple[str, Engine]]:
    """SmolLM2 with the 3-concept artifact, an API key and small bounds, on a free loopback port."""
    engine = Engine(smollm2, smol_artifact)
    options = ServeOptions(model_name="smollm2", api_key=KEY, max_prompt_tokens=64, max_tokens=64, max_choices=3)
    with serve_in_thread(create_app(engine, options)) as url:
        yield url, engine


@pytest.fixture(scope="module")
def client(server: tuple[str, Engine]) -> Iterator[ReadoutClient]:
    with ReadoutClient(server[0], api_key=KEY) as reader:
        yield reader


@pytest.fixture(scope="module")
def bare_url(gemma: LoadedModel) -> Iterator[str]:
    """Gemma (no chat template) served without vectors and without a key."""
    with serve_in_thread(create_app(Engine(gemma, None), ServeOptions(model_name="gemma"))) as url:
        yield url


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


def test_manifest_lists_concepts_and_layers(client: ReadoutClient, smol_artifact: ReadoutArtifact) -> None:
    manifest = client.manifest()
    assert manifest["concepts"] == ["joy", "anger", "fear"]
    assert manifest["layers"] == list(smol_artifact.layers)
    assert manifest == manifest_payload(smol_artifact.concepts, smol_artifact.layers,
                                        hidden_size=smol_artifact.hidden_size,
                                        calibration=calibration_json(smol_artifact), zscore=False)
    assert {"hidden_size", "calibrated", "calibration", "zscore"} <= set(manifest) and manifest["calibrated"]


def test_manifest_is_404_without_vectors(bare_url: str) -> None:
    response = httpx.get(f"{bare_url}/v1/readout/manifest")
    assert response.status_code == 404
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_models_lists_the_served_model(client: ReadoutClient) -> None:
    assert [model["id"] for model in client.http.get("/v1/models").json()["data"]] == ["smollm2"]


@pytest.mark.parametrize("endpoint", ["completions", "chat"])
def test_streamed_readout_equals_the_offline_readout(client: ReadoutClient, smollm2: LoadedModel,
                                                     smol_artifact: ReadoutArtifact, endpoint: str) -> None:
    """Each streamed token's readout equals the offline readout (one forward pass, no KV cache) of prompt +
    generated tokens at the position that produced it."""
    params = {"max_tokens": 5, "temperature": 0}
    if endpoint == "chat":
        chunks = list(client.stream_chat(CHAT, **params))
        text = smollm2.tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False)
        prompt = smollm2.tokenizer(text, add_special_tokens=False).input_ids
    else:
        chunks = list(client.stream_completion(PROMPT, **params))
        prompt = smollm2.tokenizer(PROMPT).input_ids
    generated = [chunk.token_id for chunk in chunks]
    assert len(chunks) == 5 and chunks[-1].finish_reason == "length"
    offline = read_ids(smollm2, smol_artifact, prompt + generated[:-1])
    _close(torch.tensor([chunk.readout for chunk in chunks]), offline[len(prompt) - 1:])


def test_streaming_and_non_streaming_agree_for_greedy(client: ReadoutClient) -> None:
    chunks = list(client.stream_completion(PROMPT, max_tokens=5, temperature=0))
    whole = client.complete(PROMPT, max_tokens=5, temperature=0)["choices"][0]
    assert whole["token_ids"] == [chunk.token_id for chunk in chunks]
    assert whole["text"] == "".join(chunk.text for chunk in chunks)
    assert torch.equal(torch.tensor(whole["readout"]), torch.tensor([chunk.readout for chunk in chunks]))


def test_readout_zscore_field_applies_the_calibration(client: ReadoutClient, smol_artifact: ReadoutArtifact) -> None:
    raw = torch.tensor(client.complete(PROMPT, max_tokens=3, temperature=0)["choices"][0]["readout"])
    scored = torch.tensor(client.complete(PROMPT, max_tokens=3, temperature=0,
                                          readout_zscore=True)["choices"][0]["readout"])
    _close(scored, zscored_by_calibration(raw, smol_artifact))


def test_steer_field_raises_the_steered_concept(client: ReadoutClient, smol_artifact: ReadoutArtifact) -> None:
    first = smol_artifact.layers[0]
    plain = client.complete(PROMPT, max_tokens=3, temperature=0)["choices"][0]
    steered = client.complete(PROMPT, max_tokens=3, temperature=0, steer={"fear": 4},
                              steer_layers=[first])["choices"][0]
    fear = smol_artifact.concept_index("fear")
    assert bool((torch.tensor(steered["readout"])[:, 1:, fear] > torch.tensor(plain["readout"])[:, 1:, fear]).all())


def test_readout_off_streams_tokens_without_readout(client: ReadoutClient) -> None:
    chunks = list(client.stream_completion(PROMPT, max_tokens=2, temperature=0, readout=False))
    assert len(chunks) == 2 and all(chunk.readout is None for chunk in chunks)


def test_concurrent_requests_are_not_mixed(client: ReadoutClient) -> None:
    prompts = ["Today I feel", "The storm outside", "My favourite food is"]
    sequential = [client.complete(p, max_tokens=4, temperature=0)["choices"][0] for p in prompts]
    results: dict[int, list] = {}

    def stream(index: int) -> None:
        results[index] = list(client.stream_completion(prompts[index], max_tokens=4, temperature=0))

    threads = [threading.Thread(target=stream, args=(index,)) for index in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for index, expected in enumerate(sequential):
        assert [chunk.token_id for chunk in results[index]] == expected["token_ids"]
        _close(torch.tensor([chunk.readout for chunk in results[index]]), torch.tensor(expected["readout"]))


def test_seeded_sampling_replays_and_n_gives_distinct_choices(client: ReadoutClient) -> None:
    params = {"max_tokens": 6, "temperature": 1.0, "seed": 11, "n": 2}
    first = client.complete(PROMPT, **params)["choices"]
    second = client.complete(PROMPT, **params)["choices"]
    assert [c["token_ids"] for c in first] == [c["token_ids"] for c in second]
    assert [c["index"] for c in first] == [0, 1] and first[0]["token_ids"] != first[1]["token_ids"]


def test_stop_string_ends_the_choice(client: ReadoutClient) -> None:
    free = client.complete(PROMPT, max_tokens=8, temperature=0)["choices"][0]["text"]
    stop = free.split()[2]
    choice = client.complete(PROMPT, max_tokens=8, temperature=0, stop=[stop])["choices"][0]
    assert choice["finish_reason"] == "stop" and choice["text"] == free[:free.index(stop)]
    assert len(choice["readout"]) == len(choice["token_ids"]) < 8


def test_client_disconnect_cancels_generation(server: tuple[str, Engine], client: ReadoutClient) -> None:
    _, engine = server
    before = len(engine.history)
    for count, _chunk in enumerate(client.stream_completion(PROMPT, max_tokens=64, temperature=0), start=1):
        if count == 2:
            break  # leaving the loop closes the connection
    deadline = time.monotonic() + 30
    while len(engine.history) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    record = engine.history[-1]
    assert record.cancelled and record.generated_tokens < 64


def test_non_streaming_client_that_leaves_cancels_generation(server: tuple[str, Engine]) -> None:
    url, engine = server
    before = len(engine.history)
    with pytest.raises(httpx.TimeoutException):
        httpx.post(f"{url}/v1/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=0.5,
                   json={"prompt": PROMPT, "max_tokens": 64, "temperature": 0})
    deadline = time.monotonic() + 30
    while len(engine.history) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    record = engine.history[-1]
    assert record.cancelled and record.generated_tokens < 64


@pytest.mark.parametrize(("body", "param"), [
    ({"prompt": PROMPT, "n": 4}, "n"),
    ({"prompt": PROMPT, "max_tokens": 65}, "max_tokens"),
    ({"prompt": "word " * 80}, "prompt"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": PROMPT, "temperature": -1}, "temperature"),
    ({"prompt": PROMPT, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"prompt": PROMPT, "steer": {"nope": 1}}, "steer"),
    ({"prompt": PROMPT, "echo": True}, "echo"),
    ({"max_tokens": 2}, "prompt"),
    ({"prompt": [1, 2, 10**9]}, "prompt"),
])
def test_malformed_requests_get_an_openai_style_400(client: ReadoutClient, body: dict, param: str) -> None:
    response = client.http.post("/v1/completions", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error" and error["message"]


def test_invalid_json_gets_an_openai_style_400(client: ReadoutClient) -> None:
    response = client.http.post("/v1/completions", content=b"{not json",
                                headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"


def test_unknown_route_gets_an_openai_style_404(client: ReadoutClient) -> None:
    response = client.http.get("/v1/nope")
    assert response.status_code == 404 and response.json()["error"]["type"] == "not_found_error"


def test_missing_or_wrong_api_key_gets_401(server: tuple[str, Engine]) -> None:
    url = server[0]
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = httpx.post(f"{url}/v1/completions", json={"prompt": PROMPT}, headers=headers)
        assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"


def test_chat_without_a_chat_template_gets_400(bare_url: str) -> None:
    with ReadoutClient(bare_url) as bare, pytest.raises(ServerError) as error:
        bare.chat(CHAT, max_tokens=2)
    assert error.value.status == 400 and error.value.error["code"] == "no_chat_template"


def test_importing_amygdala_loads_neither_fastapi_nor_uvicorn() -> None:
    code = ("import sys, amygdala, amygdala.readout.projection, amygdala.serve; "
            "assert not {'fastapi', 'uvicorn'} & set(sys.modules), sorted({'fastapi', 'uvicorn'} & set(sys.modules))")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
