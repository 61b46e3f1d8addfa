"""The server under load, on loopback: about 200 requests, 16 at a time, mixing streaming, non-streaming and
malformed ones, against SmolLM2 with a 3-concept readout.

- Every valid request is answered correctly: the readout has one ``[n_layers][n_concepts]`` per token, token counts
  match ``max_tokens`` (or an earlier stop) and ``usage``, and every greedy answer (tokens and readouts) equals
  what its prompt got alone before the load, so concurrent requests never mix.
- Every malformed request gets a 400 in the OpenAI error shape.
- No forward hook is left on the model, and the server process's RSS does not grow from the warm-up batch on.

Bounded: the request list is fixed, every read has a timeout, the whole run has a hard limit. Latencies (p50/p95)
and RSS are printed (``pytest -s``); timing goals live in benchmarks/, not here.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import torch

from amygdala.artifact import ReadoutArtifact
from amygdala.forward.models import LoadedModel
from amygdala.serve import Engine, ServeOptions, create_app, serve_in_thread

from readout_helpers import concept_artifact

pytestmark = pytest.mark.slow
CONCURRENCY, N_REQUESTS, SEED = 16, 200, 6
HARD_LIMIT_S = 420
RSS_SLACK_MB = 48
PROMPTS = ["Today I feel", "The storm outside", "My favourite food is", "When the letter came"]
CHAT = [{"role": "user", "content": "Say something kind."}]
MALFORMED: list[tuple[str, bytes | dict[str, Any]]] = [
    ("completions", b"{not json"),
    ("completions", b"[" * 5000),
    ("completions", {"max_tokens": 2}),
    ("completions", {"prompt": 5}),
    ("completions", {"prompt": PROMPTS[0], "n": 9}),
    ("completions", {"prompt": PROMPTS[0], "max_tokens": 999}),
    ("completions", {"prompt": PROMPTS[0], "max_tokens": -1}),
    ("completions", {"prompt": "word " * 200}),
    ("completions", {"prompt": PROMPTS[0], "temperature": -1}),
    ("completions", {"prompt": PROMPTS[0], "steer": {"nope": 2}}),
    ("completions", {"prompt": PROMPTS[0], "echo": True}),
    ("chat/completions", {"messages": []}),
    ("chat/completions", {"messages": [{"content": "no role"}]}),
]


@dataclass
class Outcome:
    kind: str
    seconds: float
    ok: bool
    detail: str = ""


@pytest.fixture(scope="module")
def artifact(smollm2: LoadedModel) -> ReadoutArtifact:
    return concept_artifact(smollm2)


@pytest.fixture(scope="module")
def server(smollm2: LoadedModel, artifact: ReadoutArtifact) -> Iterator[str]:
    options = ServeOptions(model_name="smollm2", max_prompt_tokens=64, max_tokens=8, max_choices=2)
    with serve_in_thread(create_app(Engine(smollm2, artifact), options)) as url:
        yield url


def hook_count(loaded: LoadedModel) -> int:
    modules = [loaded.model, *loaded.layers]
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in modules)  # noqa: SLF001


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20


def plan(n: int, rng: random.Random) -> list[dict[str, Any]]:
    """The fixed request mix: greedy and sampled, streamed and whole, completions and chat, and malformed."""
    requests = []
    for index in range(n):
        roll = rng.random()
        if roll < 0.2:
            path, body = MALFORMED[index % len(MALFORMED)]
            requests.append({"kind": "malformed", "path": path, "body": body})
            continue
        chat = roll > 0.85
        body = {"max_tokens": rng.randint(1, 2), "stream": rng.random() < 0.5, "temperature": 0}
        if rng.random() < 0.4:
            body |= {"temperature": 0.8, "seed": rng.randint(0, 9)}
        body |= {"messages": CHAT} if chat else {"prompt": rng.choice(PROMPTS), "n": rng.choice([1, 1, 1, 2])}
        requests.append({"kind": ("stream" if body["stream"] else "whole"), "path": "chat/completions" if chat else
                         "completions", "body": body})
    return requests


def choice_tokens(kind: str, path: str, answer: Any) -> dict[int, tuple[list[int], list[Any], str | None]]:
    """choice index -> (token ids, readouts, finish reason) from a whole response or a list of stream chunks."""
    if kind == "whole":
        return {c["index"]: (c["token_ids"], c.get("readout", []), c["finish_reason"]) for c in answer["choices"]}
    found: dict[int, tuple[list[int], list[Any], str | None]] = {}
    for chunk in answer:
        for c in chunk["choices"]:
            ids, readouts, _ = found.setdefault(c["index"], ([], [], None))
            ids.append(c["token_id"])
            readouts.append(c["readout"])
            found[c["index"]] = (ids, readouts, c["finish_reason"])
    return found


def check_answer(request: dict[str, Any], answer: Any, prompt_tokens: int, shape: tuple[int, int]) -> str:
    """'' when the answer is right for the request, else what is wrong."""
    body = request["body"]
    choices = choice_tokens(request["kind"], request["path"], answer)
    if sorted(choices) != list(range(body.get("n", 1))):
        return f"choices {sorted(choices)}"
    for ids, readouts, finish in choices.values():
        if not 1 <= len(ids) <= body["max_tokens"] or (len(ids) < body["max_tokens"]) != (finish == "stop"):
            return f"{len(ids)} tokens with finish {finish} for max_tokens {body['max_tokens']}"
        if [tuple(torch.tensor(r).shape) for r in readouts] != [shape] * len(ids):
            return f"readout shapes {[torch.tensor(r).shape for r in readouts]}"
    if request["kind"] == "whole" and answer["usage"] != {
            "prompt_tokens": prompt_tokens, "completion_tokens": sum(len(c[0]) for c in choices.values()),
            "total_tokens": prompt_tokens + sum(len(c[0]) for c in choices.values())}:
        return f"usage {answer['usage']}"
    return ""


async def send(client: httpx.AsyncClient, request: dict[str, Any]) -> Any:
    """The parsed answer: (status, JSON body) or (status, list of stream chunks)."""
    path, body = f"/v1/{request['path']}", request["body"]
    if isinstance(body, bytes):
        response = await client.post(path, content=body, headers={"Content-Type": "application/json"})
        return response.status_code, response.json()
    if not body.get("stream"):
        response = await client.post(path, json=body)
        return response.status_code, response.json()
    chunks: list[Any] = []
    async with client.stream("POST", path, json=body) as response:
        async for line in response.aiter_lines():
            if len(chunks) > 64:
                raise AssertionError("stream did not end")
            if line.startswith("data: ") and line != "data: [DONE]":
                chunks.append(json.loads(line[6:]))
            if line == "data: [DONE]":
                return response.status_code, chunks
    raise AssertionError("stream ended without [DONE]")


def test_server_under_load_answers_every_request_and_leaks_nothing(server: str, smollm2: LoadedModel,
                                                                   artifact: ReadoutArtifact) -> None:
    requests = plan(N_REQUESTS, random.Random(SEED))
    shape = (len(artifact.layers), len(artifact.concepts))
    chat_text = smollm2.tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False)
    prompt_tokens = {prompt: len(smollm2.tokenizer(prompt).input_ids) for prompt in PROMPTS}
    prompt_tokens["chat"] = len(smollm2.tokenizer(chat_text, add_special_tokens=False).input_ids)
    hooks_before = hook_count(smollm2)

    async def run() -> tuple[list[Outcome], dict[str, Any], list[float]]:
        outcomes: list[Outcome] = []
        alone: dict[str, Any] = {}
        rss: list[float] = []
        gate = asyncio.Semaphore(CONCURRENCY)
        async with httpx.AsyncClient(base_url=server, timeout=120) as client:
            for key in [*PROMPTS, "chat"]:  # each prompt alone, greedy: the reference for the loaded answers
                body = {"messages": CHAT} if key == "chat" else {"prompt": key}
                path = "chat/completions" if key == "chat" else "completions"
                alone[key] = choice_tokens("whole", path, (await send(client, {"path": path, "body": body | {
                    "max_tokens": 2, "temperature": 0}}))[1])[0]

            async def one(request: dict[str, Any]) -> None:
                async with gate:
                    start = time.perf_counter()
                    status, answer = await send(client, request)
                    seconds = time.perf_counter() - start
                if request["kind"] == "malformed":
                    ok = status == 400 and set(answer.get("error", {})) == {"message", "type", "param", "code"}
                    outcomes.append(Outcome("malformed", seconds, ok, f"{status} {answer}"))
                    return
                body = request["body"]
                tokens = prompt_tokens["chat" if "messages" in body else body["prompt"]]
                problem = f"status {status}: {answer}" if status != 200 else check_answer(request, answer, tokens,
                                                                                          shape)
                if not problem and body["temperature"] == 0:
                    want_ids, want_readout, _ = alone["chat" if "messages" in body else body["prompt"]]
                    for ids, readout, _ in choice_tokens(request["kind"], request["path"], answer).values():
                        if ids != want_ids[:len(ids)] or not torch.allclose(
                                torch.tensor(readout), torch.tensor(want_readout[:len(ids)]), atol=1e-3, rtol=1e-4):
                            problem = f"greedy answer {ids} differs from the prompt's answer alone {want_ids}"
                outcomes.append(Outcome(request["kind"], seconds, not problem, problem))

            for start in range(0, len(requests), 40):  # batches of 40, RSS sampled after each
                await asyncio.gather(*(one(request) for request in requests[start:start + 40]))
                rss.append(rss_mb())
        return outcomes, alone, rss

    began = time.perf_counter()
    outcomes, alone, rss = asyncio.run(asyncio.wait_for(run(), HARD_LIMIT_S))
    elapsed = time.perf_counter() - began

    failures = [o for o in outcomes if not o.ok]
    assert len(outcomes) == N_REQUESTS and not failures, failures[:5]
    assert {o.kind for o in outcomes} == {"stream", "whole", "malformed"}
    assert hook_count(smollm2) == hooks_before
    assert rss[-1] - rss[0] <= RSS_SLACK_MB, f"RSS grew from {rss[0]:.0f} to {rss[-1]:.0f} MiB: {rss}"
    report = {kind: sorted(o.seconds for o in outcomes if o.kind == kind) for kind in ("stream", "whole", "malformed")}
    print(f"\n{N_REQUESTS} requests ({', '.join(f'{k} {len(v)}' for k, v in report.items())}), {CONCURRENCY} at a "
          f"time, in {elapsed:.1f} s (+{len(alone)} greedy references alone); RSS after each 40: "
          f"{', '.join(f'{r:.0f}' for r in rss)} MiB")
    for kind, seconds in report.items():
        p95 = seconds[min(len(seconds) - 1, round(0.95 * (len(seconds) - 1)))]
        print(f"  {kind:<9} p50 {statistics.median(seconds) * 1000:7.0f} ms   p95 {p95 * 1000:7.0f} ms")
