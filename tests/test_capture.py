"""Capture: hooked residuals equal HF ``output_hidden_states``, the truncated forward stops after the deepest hooked
layer, hooks never outlive their block, and texts are encoded and padded as the model sees them."""

from __future__ import annotations

import copy

import pytest
import torch

from amygdala.forward.capture import (
    CaptureError,
    batch_inputs,
    capture_residuals,
    check_layers,
    encode_texts,
    truncated_forward,
)
from amygdala.forward.models import LoadedModel


@pytest.mark.slow
def test_capture_residuals_equal_hf_hidden_states_per_token(smollm2: LoadedModel) -> None:
    """layer_<idx> = HF hidden_states[idx + 1], token by token (not the last layer, which HF normalises)."""
    ids = torch.tensor([smollm2.tokenizer("The storm kept us awake all night.").input_ids])
    layers = (0, 7, 28)
    captured: dict[int, torch.Tensor] = {}
    with capture_residuals(smollm2.model, layers, lambda layer, hidden: captured.__setitem__(layer, hidden.clone())):
        truncated_forward(smollm2.model, input_ids=ids)
    with torch.inference_mode():
        states = smollm2.model(input_ids=ids, output_hidden_states=True).hidden_states
    for layer in layers:
        torch.testing.assert_close(captured[layer], states[layer + 1], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_capture_residuals_at_the_last_block_read_the_residual_before_the_final_norm(smollm2: LoadedModel) -> None:
    """The one exception to layer_<idx> = HF hidden_states[idx + 1]: at the last block HF hands out the residual
    after the model's final norm; our hooks (and the vLLM plugin's) read the raw residual, the final norm's input."""
    ids = torch.tensor([smollm2.tokenizer("The storm kept us awake all night.").input_ids])
    last = smollm2.n_layers - 1
    captured: dict[int, torch.Tensor] = {}
    norm_inputs: list[torch.Tensor] = []
    final_norm = smollm2.model.model.norm
    handle = final_norm.register_forward_pre_hook(lambda _m, args: norm_inputs.append(args[0].clone()))
    try:
        with torch.inference_mode(), capture_residuals(
                smollm2.model, (last,), lambda layer, hidden: captured.__setitem__(layer, hidden.clone())):
            states = smollm2.model(input_ids=ids, output_hidden_states=True).hidden_states
    finally:
        handle.remove()
    torch.testing.assert_close(captured[last], norm_inputs[0], rtol=0, atol=0)
    with torch.inference_mode():
        torch.testing.assert_close(final_norm(captured[last]), states[last + 1], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(captured[last], states[last + 1], atol=1e-3), "HF's last entry is normalised"


def test_truncated_forward_stops_after_the_deepest_hooked_layer(tiny_model: LoadedModel) -> None:
    reached: list[int] = []
    handles = [block.register_forward_hook(lambda _m, _i, _o, index=index: reached.append(index))
               for index, block in enumerate(tiny_model.layers)]
    try:
        with capture_residuals(tiny_model.model, [1, 0], lambda _layer, _hidden: None, stop_after_last=True):
            truncated_forward(tiny_model.model, input_ids=torch.tensor([[1, 2, 3]]))
    finally:
        for handle in handles:
            handle.remove()
    assert reached == [0, 1]


def test_capture_residuals_removes_its_hooks_even_on_error(tiny_model: LoadedModel) -> None:
    before = [len(block._forward_hooks) for block in tiny_model.layers]
    with pytest.raises(RuntimeError, match="boom"), capture_residuals(tiny_model.model, [0, 2], lambda _l, _h: None):
        assert [len(block._forward_hooks) for block in tiny_model.layers][0] == before[0] + 1
        raise RuntimeError("boom")
    assert [len(block._forward_hooks) for block in tiny_model.layers] == before


def test_check_layers_names_the_bad_indices() -> None:
    assert check_layers([3, 0], 4) == [3, 0]
    with pytest.raises(CaptureError, match=r"target layers \[4, -1\] out of range: the model has 4 layers \(0\.\.3\)"):
        check_layers([4, 1, -1], 4)
    with pytest.raises(CaptureError, match="contain duplicates"):
        check_layers([1, 1], 4)
    with pytest.raises(ValueError, match="empty"):  # still a ValueError for callers written against 0.1.0
        check_layers([], 4)


def test_encode_texts_truncates_to_max_length(tiny_model: LoadedModel) -> None:
    long_text = "word " * 50
    assert len(encode_texts(tiny_model.tokenizer, [long_text], max_length=7)[0]) == 7
    assert encode_texts(tiny_model.tokenizer, [long_text])[0][:7] == encode_texts(tiny_model.tokenizer, [long_text],
                                                                                 max_length=7)[0]


@pytest.mark.slow
def test_encode_texts_renders_one_user_turn_of_the_chat_template(smollm2: LoadedModel) -> None:
    ids = encode_texts(smollm2.tokenizer, ["Hello there"], chat_template=True)[0]
    rendered = smollm2.tokenizer.apply_chat_template([{"role": "user", "content": "Hello there"}], tokenize=False)
    assert smollm2.tokenizer.decode(ids) == rendered


def test_encode_texts_refuses_a_chat_template_the_tokenizer_lacks(tiny_model: LoadedModel) -> None:
    plain = copy.deepcopy(tiny_model.tokenizer)
    plain.chat_template = None
    with pytest.raises(CaptureError, match="has no chat template"):
        encode_texts(plain, ["x"], chat_template=True)


def test_batch_inputs_pads_on_either_side_and_counts_positions_over_real_tokens() -> None:
    left = batch_inputs([[5, 6, 7], [8]], pad_id=0, side="left", device=torch.device("cpu"))
    assert left["input_ids"].tolist() == [[5, 6, 7], [0, 0, 8]]
    assert left["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    assert left["position_ids"].tolist() == [[0, 1, 2], [0, 0, 0]]
    right = batch_inputs([[5, 6, 7], [8]], pad_id=0, side="right", device=torch.device("cpu"))
    assert right["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert right["position_ids"].tolist() == [[0, 1, 2], [0, 0, 0]]
