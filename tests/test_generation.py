"""Generation: greedy decoding equals HF ``generate``, seeded sampling replays, nucleus sampling keeps only the
nucleus, stop strings end the text, and bad sampling options are named at once."""

from __future__ import annotations

import pytest
import torch

from amygdala.forward.models import LoadedModel
from amygdala.readout.generation import (
    GenerationError,
    SamplingOptions,
    check_sampling,
    generate,
    next_token,
    stop_token_ids,
)

PROMPT = "Today I feel"


@pytest.mark.slow
def test_greedy_generation_equals_hf_generate(smollm2: LoadedModel) -> None:
    prompt = smollm2.tokenizer(PROMPT).input_ids
    steps = list(generate(smollm2, prompt, SamplingOptions(max_tokens=6)))
    with torch.inference_mode():
        reference = smollm2.model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt)),
                                           max_new_tokens=6, do_sample=False, pad_token_id=smollm2.tokenizer.pad_token_id)
    assert [step.token_id for step in steps] == reference[0, len(prompt):].tolist()[:len(steps)]
    assert all(step.readout is None for step in steps), "no reader attached: no readout"


def test_seeded_sampling_replays_and_another_seed_differs(tiny_model: LoadedModel) -> None:
    prompt = tiny_model.tokenizer(PROMPT).input_ids

    def sample(seed: int) -> list[int]:
        options = SamplingOptions(max_tokens=12, temperature=1.5, seed=seed)
        return [step.token_id for step in generate(tiny_model, prompt, options)]

    assert sample(3) == sample(3)
    assert sample(3) != sample(4)


def test_next_token_samples_only_inside_the_nucleus() -> None:
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    generator = torch.Generator().manual_seed(0)
    picks = {next_token(logits, SamplingOptions(temperature=1.0, top_p=0.7), generator) for _ in range(300)}
    assert picks == {0, 1}
    assert next_token(logits, SamplingOptions(), None) == 0, "temperature 0 is argmax"


@pytest.mark.slow
def test_stop_string_cuts_the_text_and_ends(smollm2: LoadedModel) -> None:
    prompt = smollm2.tokenizer(PROMPT).input_ids
    free = "".join(step.text for step in generate(smollm2, prompt, SamplingOptions(max_tokens=8)))
    stop = free.split()[2]
    steps = list(generate(smollm2, prompt, SamplingOptions(max_tokens=8, stop=(stop,))))
    assert steps[-1].finish_reason == "stop" and len(steps) < 8
    assert "".join(step.text for step in steps) == free[:free.index(stop)]


def test_generation_ends_at_max_tokens_or_when_cancelled(tiny_model: LoadedModel) -> None:
    prompt = tiny_model.tokenizer(PROMPT).input_ids
    steps = list(generate(tiny_model, prompt, SamplingOptions(max_tokens=3)))
    assert len(steps) <= 3 and steps[-1].finish_reason in ("length", "stop")
    assert list(generate(tiny_model, prompt, SamplingOptions(max_tokens=3), cancelled=lambda: True)) == []
    assert tiny_model.tokenizer.eos_token_id in stop_token_ids(tiny_model)


def test_check_sampling_names_every_bad_option() -> None:
    with pytest.raises(GenerationError) as caught:
        check_sampling(SamplingOptions(max_tokens=0, temperature=-1, top_p=0, stop=("",)))
    assert str(caught.value) == ("sampling options: max_tokens 0 must be at least 1; temperature -1 must be in "
                                 "0..100; top_p 0 must be in (0, 1]; stop strings must not be empty")


def test_generate_refuses_an_empty_prompt(tiny_model: LoadedModel) -> None:
    with pytest.raises(GenerationError, match="prompt is empty"):
        list(generate(tiny_model, [], SamplingOptions()))


def test_next_token_at_a_vanishing_temperature_picks_the_greedy_token() -> None:
    """Regression: temperature 1.1e-308 underflowed to 0 in fp32, so softmax(logits / t) was NaN and a request
    got a 500 ("probability tensor contains either inf, nan or element < 0"); it is the greedy limit."""
    logits = torch.tensor([0.5, 3.0, -1.0, 2.9])
    for temperature in (1.1125369292536007e-308, 5e-324, 1e-30):
        picked = next_token(logits, SamplingOptions(temperature=temperature), torch.Generator().manual_seed(0))
        assert picked == 1
