"""Readout: projection and z-score, hooks, generation parity, steering, checked against HF forward passes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from amygdala.artifact import ArtifactError, ReadoutArtifact, load_artifact, save_artifact
from amygdala.forward.capture import truncated_forward
from amygdala.forward.models import LoadedModel
from amygdala.forward.pooled import pool_texts
from amygdala.forward.pooling import PoolingSpec, pool_readout
from amygdala.readout.attach import attach, read_ids, read_text
from amygdala.readout.generation import SamplingOptions, generate
from amygdala.readout.projection import ReadoutError, ReadoutOptions, combine_layers, parse_steer

from readout_helpers import concept_artifact, identity_artifact, zscored_by_calibration

pytestmark = pytest.mark.slow
PROMPT = "Today I feel"


def _saved_and_reloaded(artifact: ReadoutArtifact, folder: Path) -> ReadoutArtifact:
    save_artifact(artifact, folder / "readout.safetensors")
    return load_artifact(folder / "readout.safetensors")


@pytest.fixture(scope="module")
def smol_artifact(smollm2: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> ReadoutArtifact:
    return _saved_and_reloaded(concept_artifact(smollm2), tmp_path_factory.mktemp("smol-artifact"))


@pytest.fixture(scope="module")
def gemma_artifact(gemma: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> ReadoutArtifact:
    return _saved_and_reloaded(concept_artifact(gemma), tmp_path_factory.mktemp("gemma-artifact"))


def _hidden_states(loaded: LoadedModel, ids: list[int]) -> tuple[torch.Tensor, ...]:
    with torch.inference_mode():
        return loaded.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states


def _close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-4) -> None:
    """Equal to float tolerance relative to the largest value (fp32 sums of ~600 products)."""
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol * float(expected.abs().max()))


def test_read_text_equals_projection_of_hf_hidden_states(gemma: LoadedModel, gemma_artifact: ReadoutArtifact) -> None:
    readout = read_text(gemma, gemma_artifact, PROMPT)
    states = _hidden_states(gemma, list(readout.token_ids))
    expected = torch.stack([states[layer + 1][0] @ gemma_artifact.vectors[layer].T for layer in gemma_artifact.layers],
                           dim=1)
    assert readout.values.shape == (len(readout.token_ids), 3, 3)
    assert readout.token_ids[0] == gemma.tokenizer.bos_token_id
    _close(readout.values, expected)


def test_read_text_zscore_applies_the_manifest_calibration(smollm2: LoadedModel,
                                                           smol_artifact: ReadoutArtifact) -> None:
    raw = read_text(smollm2, smol_artifact, PROMPT).values
    scored = read_text(smollm2, smol_artifact, PROMPT, ReadoutOptions(zscore=True)).values
    _close(scored, zscored_by_calibration(raw, smol_artifact))


def test_attach_zscore_without_calibration_raises(smollm2: LoadedModel, smol_artifact: ReadoutArtifact) -> None:
    bare = replace(smol_artifact, calibration=None)
    with pytest.raises(ReadoutError, match="calibration"):
        read_text(smollm2, bare, PROMPT, ReadoutOptions(zscore=True))


def test_attach_refuses_an_artifact_of_another_model(smollm2: LoadedModel, gemma_artifact: ReadoutArtifact) -> None:
    with pytest.raises(ArtifactError, match="hidden size 640 != the model's 576"):
        read_text(smollm2, gemma_artifact, PROMPT)


def test_attach_names_every_bad_option_at_once(smollm2: LoadedModel, smol_artifact: ReadoutArtifact) -> None:
    options = ReadoutOptions(zscore=True, steer={"nope": 1.0}, steer_layers=(0,))
    with pytest.raises(ReadoutError) as error:
        read_text(smollm2, replace(smol_artifact, calibration=None), PROMPT, options)
    assert all(word in str(error.value) for word in ("calibration", "nope", "steer layers [0]"))


def test_attach_removes_its_hooks_even_on_error(smollm2: LoadedModel, smol_artifact: ReadoutArtifact) -> None:
    """Compared with the hooks present before: transformers 5 leaves its own output-capturing hook on every layer
    once any test ran the shared model with ``output_hidden_states=True``."""
    before = [dict(layer._forward_hooks) for layer in smollm2.layers]
    with pytest.raises(RuntimeError, match="boom"), attach(smollm2, smol_artifact, ReadoutOptions(steer={"joy": 1.0})):
        assert all(len(smollm2.layers[layer]._forward_hooks) > len(before[layer]) for layer in smol_artifact.layers)
        raise RuntimeError("boom")
    assert [dict(layer._forward_hooks) for layer in smollm2.layers] == before


@pytest.mark.parametrize("sampling", [SamplingOptions(max_tokens=6),
                                      SamplingOptions(max_tokens=6, temperature=0.9, top_p=0.9, seed=7)],
                         ids=["greedy", "sampled"])
def test_generate_readouts_equal_the_offline_readout_of_the_sequence(
        smollm2: LoadedModel, smol_artifact: ReadoutArtifact, sampling: SamplingOptions) -> None:
    """Generated token k reads the residual at position prompt_len - 1 + k of prompt + generated tokens."""
    prompt = smollm2.tokenizer(PROMPT).input_ids
    with attach(smollm2, smol_artifact) as reader:
        steps = list(generate(smollm2, prompt, sampling, reader=reader))
    with attach(smollm2, smol_artifact) as reader:
        again = [step.token_id for step in generate(smollm2, prompt, sampling, reader=reader)]
    generated = [step.token_id for step in steps]
    assert len(steps) == 6 and steps[-1].finish_reason == "length" and again == generated
    assert "".join(step.text for step in steps) == smollm2.tokenizer.decode(generated, skip_special_tokens=True)
    offline = read_ids(smollm2, smol_artifact, prompt + generated[:-1])
    _close(torch.stack([step.readout for step in steps]), offline[len(prompt) - 1:])


@pytest.mark.parametrize(("pooling", "skip_tokens"), [("last", 0), ("mean", 1)])
def test_pool_texts_equals_the_runtime_hook_activations(gemma: LoadedModel, pooling: str, skip_tokens: int) -> None:
    """Training's pooled activations (batched, padded) are the residuals the readout hook sees at run time:
    an identity artifact (one concept per hidden unit) makes the readout the residual itself."""
    texts = ["I am so happy today!", "The rain kept falling on the quiet town all night."]
    layers = (3, 9, 14)
    spec = PoolingSpec(pooling, skip_tokens)  # type: ignore[arg-type]
    pooled = pool_texts(gemma, texts, layers, spec, batch_size=2)
    identity = identity_artifact(gemma, layers)
    runtime = torch.stack([pool_readout(read_text(gemma, identity, text).values, spec) for text in texts])
    _close(runtime, pooled, rtol=1e-5)


def test_steering_adds_alpha_times_prompt_norm_times_unit_vector(smollm2: LoadedModel,
                                                                  smol_artifact: ReadoutArtifact) -> None:
    layer, alpha = smol_artifact.layers[0], 0.5
    ids = smollm2.tokenizer("The old house was silent.").input_ids
    plain = read_ids(smollm2, smol_artifact, ids)
    unsteered = _hidden_states(smollm2, ids)[layer + 1][0]
    norm = float(unsteered[1:].norm(dim=-1).mean())
    options = ReadoutOptions(steer={"fear": alpha}, steer_layers=(layer,))
    with attach(smollm2, smol_artifact, options, stop_after_last=True) as reader:
        truncated_forward(smollm2.model, input_ids=torch.tensor([ids]))
        steered = reader.take()
        assert reader.steering_norms[layer] == pytest.approx(norm, rel=1e-5)
    vectors = smol_artifact.vectors[layer]
    shift = alpha * norm * (vectors @ vectors[smol_artifact.concept_index("fear")])
    _close(steered[:, 0], plain[:, 0] + shift)
    _close(read_ids(smollm2, smol_artifact, ids, ReadoutOptions(steer={"fear": 0.0})), plain, rtol=1e-6)


@pytest.mark.parametrize("concept", ["joy", "fear"])
def test_steering_dose_response_rises_with_alpha(smollm2: LoadedModel, smol_artifact: ReadoutArtifact,
                                                 concept: str) -> None:
    """Steering at the first hooked layer only, the concept's readout at the deeper layers (which the steering
    reaches only through the model), over greedily generated tokens, rises monotonically with alpha."""
    first, index = smol_artifact.layers[0], smol_artifact.concept_index(concept)
    prompt = smollm2.tokenizer(PROMPT).input_ids
    means = []
    for alpha in (0.0, 2.0, 4.0, 8.0):
        options = ReadoutOptions(steer={concept: alpha}, steer_layers=(first,))
        with attach(smollm2, smol_artifact, options) as reader:
            steps = list(generate(smollm2, prompt, SamplingOptions(max_tokens=4), reader=reader))
        means.append(torch.stack([step.readout for step in steps])[:, 1:, index].mean(0))
    deeper = torch.stack(means)  # [alpha, deeper layer]
    assert bool((deeper.diff(dim=0) > 0).all()), deeper


def test_parse_steer_names_every_malformed_spec() -> None:
    assert parse_steer(["joy=4", " fear = -2.5"]) == {"joy": 4.0, "fear": -2.5}
    with pytest.raises(ReadoutError, match="'joy', 'x=abc', '=1'"):
        parse_steer(["joy", "x=abc", "=1", "ok=1"])


def test_combine_layers_mean_is_the_average_of_the_layers_z_scores(gemma: LoadedModel,
                                                                   gemma_artifact: ReadoutArtifact) -> None:
    """The multi-layer readout of the embedded model equals the mean over the artifact's layers of the z-scored
    projections of HF hidden states (an independent reference), token by token."""
    readout = read_text(gemma, gemma_artifact, PROMPT, ReadoutOptions(zscore=True))
    states = _hidden_states(gemma, list(readout.token_ids))
    raw = torch.stack([states[layer + 1][0] @ gemma_artifact.vectors[layer].T for layer in gemma_artifact.layers],
                      dim=1)
    combined = combine_layers(readout.values)
    assert combined.shape == (len(readout.token_ids), len(gemma_artifact.concepts))
    _close(combined, zscored_by_calibration(raw, gemma_artifact).mean(dim=1), rtol=1e-3)
    with pytest.raises(ReadoutError, match="'median' is unknown: use one of mean"):
        combine_layers(readout.values, "median")  # type: ignore[arg-type]
