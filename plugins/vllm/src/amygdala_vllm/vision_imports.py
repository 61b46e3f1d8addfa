"""Text-only Qwen3.5 without torchvision: the one import that needs it, answered by transformers' PIL twin.

vLLM 0.32's ``qwen3_5.py`` (every Qwen3.5 class, text-only ``Qwen3_5ForCausalLM`` included) imports ``qwen3_vl.py``,
which imports ``transformers.models.qwen2_vl.image_processing_qwen2_vl`` at module level for one name,
``smart_resize`` (pure integer arithmetic for image sizes). That module is transformers' torchvision backend and
imports torchvision first thing, so without torchvision vLLM cannot even inspect a Qwen3.5 checkpoint ("Model
architectures ['Qwen3_5ForCausalLM'] failed to be inspected"). Nothing else on the text path touches torchvision:
transformers' ``Qwen2VLImageProcessor`` falls back to its PIL backend by itself, and the Qwen3-VL video processor
imports torchvision only when it is installed.

When torchvision is not installed (the CPU install removes the CUDA build pip brings, which cannot load on a CPU
torch), ``register()`` answers that module name with ``image_processing_pil_qwen2_vl``, transformers' own PIL backend
of the same processor, which defines the same ``smart_resize`` (``tests/test_vision_imports.py`` pins that the two
are the same function at the pinned transformers). With torchvision installed nothing is changed.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

TORCHVISION_BACKEND = "transformers.models.qwen2_vl.image_processing_qwen2_vl"
PIL_BACKEND = "transformers.models.qwen2_vl.image_processing_pil_qwen2_vl"
INSTALL_HINT = ("pip install torchvision==0.28.0 --index-url https://download.pytorch.org/whl/cpu (the CPU build "
                "that matches torch 2.13.0)")


def answer_without_torchvision() -> str | None:
    """Point ``TORCHVISION_BACKEND`` at ``PIL_BACKEND`` when torchvision is not installed; the line to log, or
    ``None`` when nothing was needed."""
    if importlib.util.find_spec("torchvision") is not None or TORCHVISION_BACKEND in sys.modules:
        return None
    try:
        sys.modules[TORCHVISION_BACKEND] = importlib.import_module(PIL_BACKEND)
    except ImportError as exc:
        return (f"amygdala-vllm: torchvision is not installed and transformers has no {PIL_BACKEND} ({exc}): vLLM's "
                f"Qwen3.5 and Qwen3-VL models will not load; {INSTALL_HINT}")
    return (f"amygdala-vllm: torchvision is not installed: {TORCHVISION_BACKEND} (imported by vLLM's Qwen3.5/Qwen3-VL "
            f"models for smart_resize) is answered by transformers' PIL backend {PIL_BACKEND}")
