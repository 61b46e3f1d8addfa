"""The plugin's switches and configuration errors, without an engine."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Artifact

from amygdala_vllm.config import PluginConfigError, check_vllm_version, config_from_env


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
