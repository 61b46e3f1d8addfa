"""Model loading: specs, dtypes, decoder layers, the context check and the weight fingerprint, on real models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from amygdala.forward.models import (
    ContextLengthError,
    LoadedModel,
    ModelLoadError,
    canonical_dtype,
    check_context_length,
    decoder_layers,
    load_model,
    model_fingerprint,
    resolve_model_path,
)


def test_canonical_dtype_maps_every_alias_and_names_a_bad_one() -> None:
    assert [canonical_dtype(name) for name in ("fp32", "bf16", "torch.float16", " Half ")] == [
        "float32", "bfloat16", "float16", "float16"]
    with pytest.raises(ModelLoadError, match="dtype 'int8' is not supported: use float32, bfloat16 or float16"):
        canonical_dtype("int8")


def test_resolve_model_path_refuses_what_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        resolve_model_path(str(tmp_path / "missing"))
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ModelLoadError, match="neither a .gguf file nor a folder with config.json"):
        resolve_model_path(str(tmp_path / "notes.txt"))


def test_loaded_model_describes_the_tiny_llama(tiny_model: LoadedModel, tiny_model_dir: Path) -> None:
    assert (tiny_model.n_layers, tiny_model.hidden_size, tiny_model.context_length) == (4, 64, 512)
    assert tiny_model.layers is decoder_layers(tiny_model.model) and tiny_model.device == torch.device("cpu")
    assert tiny_model.model_id == tiny_model_dir.name and tiny_model.tokenizer.pad_token is not None
    assert not any(parameter.requires_grad for parameter in tiny_model.model.parameters())
    with pytest.raises(ModelLoadError, match="cannot find the decoder layers of Linear"):
        decoder_layers(torch.nn.Linear(2, 2))


def test_load_model_in_bfloat16_keeps_the_weights_and_changes_the_fingerprint(tiny_model: LoadedModel,
                                                                               tiny_model_dir: Path) -> None:
    half = load_model(str(tiny_model_dir), dtype="bf16")
    assert half.dtype == "bfloat16" and next(half.model.parameters()).dtype == torch.bfloat16
    assert half.fingerprint != tiny_model.fingerprint
    assert load_model(str(tiny_model_dir)).fingerprint == tiny_model.fingerprint, "the same weights, the same hash"


def test_model_fingerprint_changes_with_one_sampled_weight(tiny_model_dir: Path) -> None:
    loaded = load_model(str(tiny_model_dir))
    before = model_fingerprint(loaded.model)
    with torch.no_grad():
        loaded.model.get_input_embeddings().weight[0, 0] += 1.0
    assert model_fingerprint(loaded.model) != before


def test_check_context_length_names_the_longest_text(tiny_model: LoadedModel) -> None:
    check_context_length(tiny_model, [[1] * 512], ["fits"], "fix")
    with pytest.raises(ContextLengthError, match=r"2 text\(s\) have more tokens than the model's context of 512 "
                                                 r"\(the longest, 'b'\.\.\., has 900\): shorten"):
        check_context_length(tiny_model, [[1] * 600, [1] * 900, [1]], ["a", "b", "c"], "shorten")


@pytest.mark.slow
def test_the_embedded_models_load_with_their_documented_shapes(gemma: LoadedModel, smollm2: LoadedModel) -> None:
    assert (gemma.n_layers, gemma.hidden_size, gemma.tokenizer.padding_side) == (18, 640, "left")
    assert (smollm2.n_layers, smollm2.hidden_size, smollm2.tokenizer.padding_side) == (30, 576, "right")
    assert gemma.fingerprint != smollm2.fingerprint and len(gemma.fingerprint) == 64
