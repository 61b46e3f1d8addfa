"""amygdala-vllm: amygdala readouts from stock vLLM (pinned to 0.32.0; see INTERNALS.md).

Two entry points, both named ``amygdala_readout``:
- ``vllm.general_plugins`` -> ``register``: vLLM calls it in every process (API server, engine core, workers).
  With ``VLLM_READOUT_VECTORS`` set it adds the worker extension, hooks the model runner's ``load_model`` (the
  readout op enters the compiled graph; the compilation mode is left as the user set it) and patches the engine and
  the OpenAI serving classes so every completion carries per-token readouts. It pins vLLM's Model Runner V1 (sets
  ``VLLM_USE_V2_MODEL_RUNNER=0`` when unset, refuses 1; ``runner.py``), the only runner it hooks, and every worker
  refuses to start when its runner loaded the model without the hooks. ``AMYGDALA_VLLM_DISABLE=1`` turns it off.
  Configuration errors raise here, so vLLM stops instead of serving without readouts.
- ``vllm.endpoint_plugins`` -> ``endpoint_plugin``: ``GET /v1/readout/manifest``; vLLM loads endpoint plugins only
  when ``VLLM_PLUGINS`` names them.

This module imports neither vLLM nor amygdala at import time: vLLM imports it while it is itself loading, and it
logs (rather than raises) import errors of plugins, so all work and all errors happen inside ``register``.
"""

from __future__ import annotations

import logging
from typing import Any

# A child of vLLM's "vllm" logger: vLLM configures only that one, so these lines appear in vLLM's own log.
logger = logging.getLogger(f"vllm.{__name__}")
__all__ = ["endpoint_plugin", "register"]
__version__ = "0.1.0"


def register() -> None:
    """The ``vllm.general_plugins`` entry point."""
    from amygdala_vllm.config import VECTORS_VAR, check_vllm_version, config_from_env, disabled

    if disabled():
        logger.info("amygdala-vllm is disabled (AMYGDALA_VLLM_DISABLE=1)")
        return
    config = config_from_env()
    if config is None:
        logger.info("amygdala-vllm is installed but inactive: %s is not set", VECTORS_VAR)
        return
    from amygdala_vllm.runner import pin_v1_runner

    runner_line = pin_v1_runner()  # before vLLM is imported or any VllmConfig is built in this process
    import vllm

    from amygdala_vllm import engine, openai
    from amygdala_vllm.vision_imports import answer_without_torchvision

    check_vllm_version(vllm.__version__)
    logger.info(runner_line)  # vLLM configures its logging later in the frontend: seen from the engine core on
    if vision_line := answer_without_torchvision():
        logger.info(vision_line)
    engine.install_patches(config)
    openai.install_patches()
    logger.info("amygdala-vllm reads %d concepts at layers %s from %s", len(config.concepts), list(config.layers),
                config.vectors)


def endpoint_plugin() -> Any:
    """The ``vllm.endpoint_plugins`` entry point: a factory returning vLLM's ``EndpointPlugin``."""
    from amygdala_vllm.openai import ReadoutEndpoint

    return ReadoutEndpoint()
