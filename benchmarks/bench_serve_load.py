"""`amygdala serve` under load: 500 requests, 64 at a time, on SmolLM2, streamed and whole, with 10% of the
streaming clients dropping mid-stream. A goal, not a test: the figures go to benchmarks/README.md.

The server is a real ``amygdala serve`` subprocess (its RSS read from ``/proc/<pid>/status``) with a random
16-concept artifact at SmolLM2's default layers. Every request is one of a few dozen specs (prompt or chat, greedy
or seeded sampling, ``n`` 1 or 2, 4-8 tokens); each spec is first run alone, one at a time, and every completed
answer under load must equal its solo run: the same token ids, the same text, the same readouts (max abs
difference reported, goal 0). Goals: 0 wrong answers, 0 5xx, RSS growth (after the solo runs -> after the load)
under 50 MB.

Phase 2 (queue full) restarts the server with ``--max-queue 4`` and sends 32 requests at once: some must get a 429
with ``Retry-After``, none a 5xx; each refused client waits as told and retries until its answer comes, which
must equal its solo run.

    python benchmarks/bench_serve_load.py [--requests 500] [--concurrency 64] [--quick]

The last output line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import torch

from amygdala.artifact import Calibration, ReadoutArtifact, save_artifact
from amygdala.forward.models import load_model
from amygdala.training.stage import default_target_layers

PROMPTS = ["Today I feel", "The storm outside", "My favourite food is", "When the letter came",
           "She looked at the sea and", "After the long meeting, he"]
CHATS = [[{"role": "user", "content": "Say something kind."}], [{"role": "user", "content": "Describe a rainy day."}]]


@dataclass(frozen=True)
class Spec:
    """One distinct request: its body without ``stream``. Every request of the load is one of these."""

    path: str
    body: tuple[tuple[str, Any], ...]

    def json(self, stream: bool) -> dict[str, Any]:
        return dict(self.body) | {"stream": stream}


@dataclass
class Tally:
    """What the load saw."""

    completed: int = 0
    dropped: int = 0
    wrong: list[str] = field(default_factory=list)
    status: dict[int, int] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)
    max_readout_diff: float = 0.0
    retried_after_429: int = 0


def specs(rng: random.Random) -> list[Spec]:
    found = []
    for prompt in PROMPTS:
        for sampling in ({"temperature": 0}, {"temperature": 0.8, "seed": rng.randint(0, 2**32)}):
            body = {"prompt": prompt, "max_tokens": rng.randint(4, 8), "n": rng.choice([1, 2])} | sampling
            found.append(Spec("/v1/completions", tuple(sorted(body.items()))))
    for messages in CHATS:
        body = {"messages": messages, "max_tokens": 6, "temperature": 0}
        found.append(Spec("/v1/chat/completions", tuple((k, json.dumps(v) if k == "messages" else v)
                                                         for k, v in sorted(body.items()))))
    return found


def body_of(spec: Spec, stream: bool) -> dict[str, Any]:
    body = spec.json(stream)
    if "messages" in body:
        body["messages"] = json.loads(body["messages"])
    return body


def choices_of(answer: dict[str, Any] | list[dict[str, Any]]) -> dict[int, tuple[list[int], str, list[Any]]]:
    """choice index -> (token ids, text, readouts), from a whole response or a list of stream chunks."""
    if isinstance(answer, dict):
        return {c["index"]: (c["token_ids"], c.get("text") or c.get("message", {}).get("content", ""),
                             c.get("readout", [])) for c in answer["choices"]}
    found: dict[int, tuple[list[int], str, list[Any]]] = {}
    for chunk in answer:
        for c in chunk["choices"]:
            ids, text, readouts = found.setdefault(c["index"], ([], "", []))
            delta = c.get("text") if "text" in c else c.get("delta", {}).get("content", "")
            ids.append(c["token_id"])
            readouts.append(c["readout"])
            found[c["index"]] = (ids, text + (delta or ""), readouts)
    return found


def compare(got: dict[int, tuple[list[int], str, list[Any]]], want: dict[int, tuple[list[int], str, list[Any]]],
            tally: Tally) -> str:
    """'' when ``got`` equals the solo run ``want`` (ids, text, readouts), else what differs."""
    if sorted(got) != sorted(want):
        return f"choices {sorted(got)} != {sorted(want)}"
    for index, (ids, text, readouts) in got.items():
        want_ids, want_text, want_readouts = want[index]
        if ids != want_ids or text != want_text:
            return f"choice {index}: {ids} {text!r} != solo {want_ids} {want_text!r}"
        diff = float((torch.tensor(readouts) - torch.tensor(want_readouts)).abs().max()) if readouts else 0.0
        tally.max_readout_diff = max(tally.max_readout_diff, diff)
        if diff > 1e-5:
            return f"choice {index}: readouts differ by {diff}"
    return ""


async def post(client: httpx.AsyncClient, spec: Spec, stream: bool, drop_after: int | None
               ) -> tuple[int, Any, dict[str, str]]:
    """(status, answer, headers); answer is the JSON body, the list of stream chunks, or None when dropped."""
    if not stream:
        response = await client.post(spec.path, json=body_of(spec, False))
        return response.status_code, response.json(), dict(response.headers)
    chunks: list[Any] = []
    async with client.stream("POST", spec.path, json=body_of(spec, True)) as response:
        if response.status_code != 200:
            return response.status_code, json.loads(await response.aread()), dict(response.headers)
        async for line in response.aiter_lines():
            if line == "data: [DONE]":
                return 200, chunks, dict(response.headers)
            if line.startswith("data: "):
                chunks.append(json.loads(line[6:]))
                if drop_after is not None and len(chunks) >= drop_after:
                    return 200, None, {}  # leaving the block closes the connection mid-stream
    raise RuntimeError("the stream ended without [DONE]")


async def one(client: httpx.AsyncClient, request: tuple[Spec, bool, int | None], solo: dict[Spec, Any],
              tally: Tally, retry_429: bool) -> None:
    spec, stream, drop_after = request
    start = time.perf_counter()
    while True:
        status, answer, headers = await post(client, spec, stream, drop_after)
        tally.status[status] = tally.status.get(status, 0) + 1
        if status == 429 and retry_429:
            tally.retried_after_429 += 1
            await asyncio.sleep(float(headers.get("retry-after", "1")))
            continue
        break
    tally.seconds.append(time.perf_counter() - start)
    if status != 200:
        tally.wrong.append(f"{spec.path} {status}: {str(answer)[:120]}")
    elif answer is None:
        tally.dropped += 1
    elif problem := compare(choices_of(answer), solo[spec], tally):
        tally.wrong.append(problem)
    else:
        tally.completed += 1


def plan(all_specs: list[Spec], n: int, rng: random.Random) -> list[tuple[Spec, bool, int | None]]:
    """n requests: a spec each, half streamed, a tenth of the streamed ones dropped after 1-3 chunks."""
    requests = []
    for _ in range(n):
        stream = rng.random() < 0.5
        drop = rng.randint(1, 3) if stream and rng.random() < 0.2 else None  # 20% of half = 10% of all clients
        requests.append((rng.choice(all_specs), stream, drop))
    return requests


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def random_artifact(model: str, n_concepts: int = 16) -> ReadoutArtifact:
    loaded = load_model(model)
    generator = torch.Generator().manual_seed(0)
    layers = default_target_layers(loaded.n_layers)
    vectors = {layer: torch.nn.functional.normalize(torch.randn(n_concepts, loaded.hidden_size,
                                                                generator=generator), dim=1) for layer in layers}
    calibration = Calibration({layer: torch.zeros(n_concepts) for layer in layers},
                              {layer: torch.ones(n_concepts) for layer in layers})
    return ReadoutArtifact(tuple(f"concept_{i}" for i in range(n_concepts)), layers, vectors, loaded.hidden_size,
                           calibration=calibration)


@contextmanager
def server(vectors: Path, model: str, max_queue: int) -> Iterator[tuple[str, int]]:
    """A real ``amygdala serve`` subprocess on a free loopback port: (base URL, pid)."""
    port = free_port()
    argv = [sys.executable, "-m", "amygdala.cli", "serve", "--model", model, "--vectors", str(vectors), "--port",
            str(port), "--max-tokens", "16", "--max-choices", "2", "--max-queue", str(max_queue)]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"serve exited: {process.stderr.read() if process.stderr else ''}")
            try:
                httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        process.terminate()
        process.wait(timeout=60)


async def solo_runs(url: str, all_specs: list[Spec]) -> dict[Spec, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        return {spec: choices_of((await post(client, spec, False, None))[1]) for spec in all_specs}


async def load(url: str, requests: list[tuple[Spec, bool, int | None]], solo: dict[Spec, Any], concurrency: int,
               retry_429: bool) -> Tally:
    tally, gate = Tally(), asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency + 8, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        async def gated(request: tuple[Spec, bool, int | None]) -> None:
            async with gate:
                await one(client, request, solo, tally, retry_429)

        await asyncio.gather(*(gated(request) for request in requests))
    return tally


def summary(tally: Tally, seconds: float) -> dict[str, Any]:
    ordered = sorted(tally.seconds)
    return {"completed": tally.completed, "dropped_mid_stream": tally.dropped, "wrong": len(tally.wrong),
            "status_5xx": sum(count for status, count in tally.status.items() if status >= 500),
            "status_429": tally.status.get(429, 0), "statuses": {str(k): v for k, v in sorted(tally.status.items())},
            "max_readout_abs_diff": tally.max_readout_diff, "seconds": round(seconds, 1),
            "p50_ms": round(1000 * statistics.median(ordered)) if ordered else None,
            "p95_ms": round(1000 * ordered[round(0.95 * (len(ordered) - 1))]) if ordered else None,
            "first_wrong": tally.wrong[:3]}


def run_load_phase(vectors: Path, args: argparse.Namespace, all_specs: list[Spec]) -> dict[str, Any]:
    with server(vectors, args.model, max_queue=256) as (url, pid):
        solo = asyncio.run(solo_runs(url, all_specs))
        rss_before = rss_mb(pid)
        requests = plan(all_specs, args.requests, random.Random(args.seed))
        began = time.perf_counter()
        tally = asyncio.run(load(url, requests, solo, args.concurrency, retry_429=False))
        seconds = time.perf_counter() - began
        time.sleep(1.0)
        rss_after = rss_mb(pid)
    figures = summary(tally, seconds)
    return figures | {"requests": len(requests), "concurrency": args.concurrency, "rss_mb_before": round(rss_before),
                      "rss_mb_after": round(rss_after), "rss_growth_mb": round(rss_after - rss_before, 1)}


def run_queue_phase(vectors: Path, args: argparse.Namespace, all_specs: list[Spec]) -> dict[str, Any]:
    with server(vectors, args.model, max_queue=4) as (url, _pid):
        solo = asyncio.run(solo_runs(url, all_specs))
        requests = plan(all_specs, 32, random.Random(args.seed + 1))
        requests = [(spec, stream, None) for spec, stream, _ in requests]  # nobody drops: every answer is checked
        began = time.perf_counter()
        tally = asyncio.run(load(url, requests, solo, 32, retry_429=True))
        seconds = time.perf_counter() - began
    return summary(tally, seconds) | {"requests": 32, "max_queue": 4, "retries_after_429": tally.retried_after_429}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="60 requests, 16 at a time: a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.concurrency = 60, 16
    all_specs = specs(random.Random(args.seed))
    with tempfile.TemporaryDirectory(prefix="amygdala-load-") as scratch:
        vectors = Path(scratch) / "readout.safetensors"
        save_artifact(random_artifact(args.model), vectors)
        print(f"load phase: {args.requests} requests, {args.concurrency} at a time ...", file=sys.stderr)
        loaded = run_load_phase(vectors, args, all_specs)
        print("queue-full phase: 32 requests at once, --max-queue 4 ...", file=sys.stderr)
        queue = run_queue_phase(vectors, args, all_specs)
    result = {"load": loaded, "queue_full": queue, "model": args.model, "specs": len(all_specs),
              "load_average_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}
    goals = {"wrong": loaded["wrong"] == 0 and queue["wrong"] == 0,
             "no_5xx": loaded["status_5xx"] == 0 and queue["status_5xx"] == 0,
             "rss_growth_under_50_mb": loaded["rss_growth_mb"] < 50, "queue_full_gives_429": queue["status_429"] > 0}
    result["goals_met"] = goals
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
