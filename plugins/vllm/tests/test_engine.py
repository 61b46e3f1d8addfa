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
from conftest import ENGINE_ARGS, HERE, MODES, Artifact, assert_close, generated_reference, plugin_env


@pytest.mark.parametrize("mode", MODES)
def test_offline_generate_zscored_readouts_equal_offline_readout(
        mode: str, model_dir: Path, artifact: Artifact, reference: Callable[..., Any], tmp_path: Path) -> None:
    request = tmp_path / "request.json"
    engine_args = {**ENGINE_ARGS, **({"enforce_eager": True} if mode == "eager" else {})}
    request.write_text(json.dumps({"model": str(model_dir), "prompts": ["Hello, my name is", "Rain again, so"],
                                   "max_tokens": 5, "n": 1, "engine_args": engine_args}))
    out = subprocess.run([sys.executable, str(HERE / "offline_generate.py"), str(request)], capture_output=True,
                         text=True, env=plugin_env(artifact, AMYGDALA_VLLM_ZSCORE="1"), timeout=400)
    assert out.returncode == 0, out.stderr[-4000:]
    (line,) = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    (engine,) = [json.loads(line[len("ENGINE "):]) for line in out.stdout.splitlines() if line.startswith("ENGINE ")]
    assert engine["enforce_eager"] is (mode == "eager"), engine
    assert (engine["compilation_mode"] == 0) is (mode == "eager"), engine
    results = json.loads(line[len("RESULT "):])
    expected = reference([r["prompt_ids"] + r["token_ids"][:-1] for r in results], True)
    for result, values in zip(results, expected, strict=True):
        assert len(result["readout"]) == len(result["token_ids"]) == 5
        assert_close(result["readout"], generated_reference(values, len(result["prompt_ids"])), f"offline {mode}")
