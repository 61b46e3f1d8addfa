"""Shared fixtures: the real models (loaded once per session) and a tiny random model for fast unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from amygdala.forward.models import LoadedModel, load_model

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def gemma() -> LoadedModel:
    """The embedded default model, Gemma 3 270M (18 layers, hidden 640; pads on the left)."""
    return load_model("default")


@pytest.fixture(scope="session")
def smollm2() -> LoadedModel:
    """SmolLM2-135M-Instruct (30 layers, hidden 576; pads on the right; has a chat template)."""
    return load_model("smollm2")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 4-layer Llama saved as an HF folder, with SmolLM2's tokenizer: fast, not evidence."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from amygdala.forward.models import convert_gguf, smollm2_gguf_path

    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(str(convert_gguf(smollm2_gguf_path())))
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir: Path) -> LoadedModel:
    return load_model(str(tiny_model_dir))


@pytest.fixture(scope="session")
def sample_graph_path() -> Path:
    from amygdala.extraction.sources.graph_file import bundled_sample_path

    return bundled_sample_path()
