"""Text-only Qwen3.5 in a venv without torchvision (the CPU install removes the CUDA build pip brings)."""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from amygdala_vllm.vision_imports import PIL_BACKEND, TORCHVISION_BACKEND


def _function_source(module: str, name: str) -> str:
    spec = importlib.util.find_spec(module.rsplit(".", 1)[0])
    assert spec is not None and spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations))) / f"{module.rsplit('.', 1)[1]}.py"
    (node,) = [node for node in ast.parse(path.read_text()).body if isinstance(node, ast.FunctionDef)
               and node.name == name]
    return ast.dump(node)


def test_pil_backend_defines_the_same_smart_resize_vllm_imports_from_the_torchvision_backend() -> None:
    """The one name vLLM's qwen3_vl.py imports from the torchvision backend is the same function in the PIL twin
    (at the pinned transformers): answering the module with its twin changes no image size."""
    assert _function_source(TORCHVISION_BACKEND, "smart_resize") == _function_source(PIL_BACKEND, "smart_resize")


def test_vllm_qwen3_5_module_needs_torchvision_only_without_the_plugin(tmp_path: Path) -> None:
    """Control for the plugin's answer: this venv has no torchvision, and vLLM's Qwen3.5 module does not import
    without the plugin (the catch our users met)."""
    assert importlib.util.find_spec("torchvision") is None
    env = {key: value for key, value in os.environ.items() if not key.startswith(("VLLM_", "AMYGDALA_VLLM_"))}
    out = subprocess.run([sys.executable, "-c", "import vllm.model_executor.models.qwen3_5"], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode != 0 and "No module named 'torchvision'" in out.stderr, out.stderr[-2000:]
