"""Which vLLM model runner the plugin hooks: Model Runner V1, chosen explicitly before vLLM builds its config.

vLLM 0.32 builds Model Runner V2 (``vllm.v1.worker.gpu.model_runner.GPUModelRunner``) by default on a CUDA machine
with Triton (``VllmConfig.use_v2_model_runner``); the plugin hooks V1 only (INTERNALS.md, "Model Runner V2"). So,
when the plugin is active:

- ``VLLM_USE_V2_MODEL_RUNNER`` unset: ``register()`` sets it to 0 in its process, before any ``VllmConfig`` exists
  (``register()`` runs from ``EngineArgs.__post_init__``), and every process vLLM starts later inherits it (the
  engine core and workers also run ``register()`` themselves). vLLM reads the variable each time it asks.
- ``VLLM_USE_V2_MODEL_RUNNER=1``: refused, naming the variable.
- A feature that makes vLLM take V2 whatever the variable says (HiSparse, watermarking): refused, naming it.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from typing import Any

from amygdala_vllm.config import DISABLE_VAR, PluginConfigError

V2_VAR = "VLLM_USE_V2_MODEL_RUNNER"
#: The model runner classes whose ``load_model`` the plugin wraps (CPU subclasses the GPU one).
HOOKED_RUNNERS = ("vllm.v1.worker.gpu_model_runner.GPUModelRunner", "vllm.v1.worker.cpu_model_runner.CPUModelRunner")


def pin_v1_runner(environ: MutableMapping[str, str] = os.environ) -> str:
    """Set ``VLLM_USE_V2_MODEL_RUNNER=0`` when it is unset; refuse a request for V2. Returns the line to log."""
    value = environ.get(V2_VAR, "").strip()
    if not value:
        environ[V2_VAR] = value = "0"
    if value not in ("0", "1"):
        raise PluginConfigError(f"amygdala-vllm: {V2_VAR}={value!r} is neither 0 nor 1: unset it (the plugin then "
                                f"sets 0)")
    if value == "1":
        raise PluginConfigError(f"amygdala-vllm: {V2_VAR}=1 asks for vLLM's Model Runner V2, which the plugin does "
                                f"not hook: unset {V2_VAR} (the plugin then sets 0) or set {DISABLE_VAR}=1")
    return (f"amygdala-vllm: using vLLM's Model Runner V1 ({V2_VAR}=0): the readout hooks wrap V1's model runner "
            f"only, and vLLM 0.32 would take Model Runner V2 by default on a CUDA GPU with Triton")


def v2_only_features(args: Any) -> list[str]:
    """Problems with engine arguments (``EngineArgs``) that make vLLM 0.32 take Model Runner V2 whatever
    ``VLLM_USE_V2_MODEL_RUNNER`` says (``VllmConfig.use_v2_model_runner``)."""
    problems = []
    if getattr(getattr(args, "attention_config", None), "hisparse_config", None) is not None:
        problems.append("HiSparse (attention_config.hisparse_config) runs only on vLLM's Model Runner V2, which the "
                        "plugin does not hook: drop it")
    if getattr(args, "watermark_config", None) is not None:
        problems.append("watermarking (--watermark-config) runs only on vLLM's Model Runner V2, which the plugin "
                        "does not hook: drop it")
    return problems


def check_v1_chosen(vllm_config: Any) -> None:
    """The built ``VllmConfig`` must select Model Runner V1 (a guard behind ``pin_v1_runner`` and
    ``v2_only_features``, for a V2 trigger a later vLLM adds)."""
    if vllm_config.use_v2_model_runner:
        raise PluginConfigError(f"amygdala-vllm: vLLM chose Model Runner V2 for this engine ({V2_VAR}="
                                f"{os.environ.get(V2_VAR)!r}), which the plugin does not hook: drop the V2-only "
                                f"feature or set {DISABLE_VAR}=1")


def runner_name(runner: Any) -> str:
    cls = type(runner)
    return f"{cls.__module__}.{cls.__qualname__}"
