"""The plugin's switches and configuration errors, without an engine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from amygdala_vllm.config import PluginConfigError, check_vllm_version, config_from_env

from conftest import Artifact


def test_register_with_disable_switch_patches_nothing(monkeypatch: pytest.MonkeyPatch, artifact: Artifact) -> None:
    from vllm.engine.arg_utils import EngineArgs

    import amygdala_vllm

    monkeypatch.setenv("VLLM_READOUT_VECTORS", str(artifact.vectors))
    monkeypatch.setenv("AMYGDALA_VLLM_DISABLE", "1")
    original = EngineArgs.create_engine_config
    amygdala_vllm.register()
    assert EngineArgs.create_engine_config is original


def test_config_reports_every_problem_at_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VLLM_READOUT_VECTORS", "/nonexistent/readout.safetensors")
    monkeypatch.setenv("AMYGDALA_VLLM_ZSCORE", "maybe")
    with pytest.raises(PluginConfigError) as caught:
        config_from_env()
    assert "AMYGDALA_VLLM_ZSCORE='maybe'" in str(caught.value)
    assert "/nonexistent/readout.safetensors, which is not a file" in str(caught.value)


def test_config_refuses_zscore_without_calibration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import torch

    from amygdala.artifact import ReadoutArtifact, save_artifact

    vectors = {3: torch.nn.functional.normalize(torch.randn(2, 8), dim=-1)}
    save_artifact(ReadoutArtifact(("a", "b"), (3,), vectors, 8), tmp_path / "r.safetensors")
    monkeypatch.setenv("VLLM_READOUT_VECTORS", str(tmp_path / "r.safetensors"))
    monkeypatch.setenv("AMYGDALA_VLLM_ZSCORE", "1")
    with pytest.raises(PluginConfigError, match="needs a manifest with calibration"):
        config_from_env()


def test_unpinned_vllm_version_is_refused() -> None:
    check_vllm_version("0.32.0")
    with pytest.raises(PluginConfigError, match="pinned to vLLM 0.32.0 and found 0.33.0"):
        check_vllm_version("0.33.0")


@pytest.mark.parametrize("enforce_eager", [False, True])
def test_plugin_leaves_compilation_and_eager_mode_as_the_user_set_them(
        monkeypatch: pytest.MonkeyPatch, artifact: Artifact, model_dir: Path, enforce_eager: bool) -> None:
    """Regression guard for the plugin forcing ``enforce_eager=True`` (it did before the readout became an op in
    the compiled graph): the engine config keeps vLLM's default compilation, or eager when the user asks."""
    from vllm.config import CompilationMode
    from vllm.engine.arg_utils import EngineArgs

    import amygdala_vllm
    from amygdala_vllm.engine import CACHE_KEY, WORKER_EXTENSION

    monkeypatch.setenv("VLLM_READOUT_VECTORS", str(artifact.vectors))
    amygdala_vllm.register()
    config = EngineArgs(model=str(model_dir), dtype="float32", max_model_len=256,
                        enforce_eager=enforce_eager).create_engine_config()
    assert config.model_config.enforce_eager is enforce_eager
    assert (config.compilation_config.mode == CompilationMode.NONE) is enforce_eager
    assert config.parallel_config.worker_extension_cls == WORKER_EXTENSION
    assert config.additional_config[CACHE_KEY]["layers"] == [0, 7, 15, 29]


def test_register_without_vectors_leaves_vllm_untouched(artifact: Artifact) -> None:
    """Plugin installed, no readout requested: no engine argument, model runner or serving class is patched, so
    the model runs exactly as without the plugin (checked in a fresh process, since patches are per process)."""
    code = """
import amygdala_vllm
from vllm.engine.arg_utils import EngineArgs
from vllm.entrypoints.openai.completion.serving import OpenAIServingCompletion
from vllm.v1.worker.cpu_model_runner import CPUModelRunner
before = [EngineArgs.create_engine_config, CPUModelRunner.load_model,
          OpenAIServingCompletion.request_output_to_completion_response]
amygdala_vllm.register()
after = [EngineArgs.create_engine_config, CPUModelRunner.load_model,
         OpenAIServingCompletion.request_output_to_completion_response]
assert before == after, after
print("UNTOUCHED")
"""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("VLLM_", "AMYGDALA_VLLM_"))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0 and "UNTOUCHED" in out.stdout, out.stderr[-3000:]
