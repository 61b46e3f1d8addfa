"""The train stage against an independent reference on the real models, its invariances, cache and errors."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from amygdala.artifact import ModelIdentity, save_artifact
from amygdala.extraction.examples import Example
from amygdala.forward.activation_cache import ActivationCache
from amygdala.forward.models import LoadedModel, load_model
from amygdala.forward.pooled import iter_pooled
from amygdala.forward.pooling import PoolingSpec
from amygdala.training.layers import AutoLayers
from amygdala.training.stage import (
    CAA_RECIPE,
    TrainError,
    TrainOptions,
    data_sha256,
    default_target_layers,
    train,
    training_texts,
)
from amygdala.training.statistics import DirectionError

TEXTS = [
    "She laughed and hugged me at the station.",
    "The report is due on Monday morning",
    "I could not stop shaking after the call!",
    "We planted tomatoes along the fence.",
    "Why does he never listen to me?",
    "The sunset over the bay was golden",
    "My hands were cold and my heart raced",
    "Lunch was rice and beans again.",
]
LABELS = {  # concept -> (positive text indices, negative text indices)
    "joy": ([0, 5, 3], [2, 4, 6]),
    "fear": ([2, 6], [0, 1, 7]),
    "anger": ([4], [0, 5, 7, 1]),
}


def _examples(split: str = "train") -> list[Example]:
    return [Example(concept, polarity, TEXTS[index], f"k{index}", 9.0 if polarity == "positive" else 0.0, split)
            for concept, sides in LABELS.items()
            for polarity, indices in zip(("positive", "negative"), sides) for index in indices]


def _many_examples(n_texts: int = 40) -> list[Example]:
    rng = random.Random(0)
    words = ["warm", "calm", "tense", "bright", "dark", "quiet", "loud", "gentle", "sharp", "soft", "rain", "sun"]
    texts = [f"note {i}: " + " ".join(rng.choice(words) for _ in range(rng.randint(2, 9))) + rng.choice(".!?;")
             for i in range(n_texts)]
    return [Example(concept, "positive" if (i + shift) % 3 == 0 else "negative", text, f"k{i}", 5.0, "train")
            for shift, concept in enumerate(("joy", "fear", "calm")) for i, text in enumerate(texts)
            if (i + shift) % 3 != 2]


class RowCounter:
    """Counts the texts that reach decoder block 0 (a forward hook on the real module)."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.rows = 0
        self.handle = loaded.layers[0].register_forward_hook(self._hook)

    def _hook(self, _module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], _output: object) -> None:
        self.rows += int(inputs[0].shape[0])

    def __enter__(self) -> RowCounter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.handle.remove()


def _reference_vectors(loaded: LoadedModel, layers: list[int]) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
    """diff-of-means from plain ``output_hidden_states`` of each unpadded text (no hooks, no batching)."""
    last = []
    for text in TEXTS:
        with torch.no_grad():
            encoded = loaded.tokenizer(text, return_tensors="pt")
            hidden = loaded.model(**encoded, output_hidden_states=True).hidden_states
        last.append(torch.stack([hidden[layer + 1][0, -1].double() for layer in layers]))
    pooled = torch.stack(last)
    vectors = {}
    for position, layer in enumerate(layers):
        rows = [pooled[pos, position].mean(0) - pooled[neg, position].mean(0)
                for pos, neg in (LABELS[c] for c in sorted(LABELS))]
        vectors[layer] = torch.nn.functional.normalize(torch.stack(rows), dim=1)
    return vectors, pooled


@pytest.mark.slow
@pytest.mark.parametrize(("model_name", "layers"), [("gemma", [3, 9, 16]), ("smollm2", [5, 20, 28])])
def test_train_vectors_equal_an_output_hidden_states_reference(model_name: str, layers: list[int],
                                                               request: pytest.FixtureRequest, tmp_path: Path) -> None:
    loaded: LoadedModel = request.getfixturevalue(model_name)
    artifact = train(loaded, _examples(), TrainOptions(**CAA_RECIPE, target_layers=tuple(layers), batch_size=3))
    reference, pooled = _reference_vectors(loaded, layers)
    assert artifact.concepts == ("anger", "fear", "joy")
    for position, layer in enumerate(layers):
        cosine = torch.nn.functional.cosine_similarity(artifact.vectors[layer].double(), reference[layer], dim=1)
        assert cosine.min() >= 0.999
        projections = pooled[:, position] @ artifact.vectors[layer].double().T
        torch.testing.assert_close(artifact.calibration.mean[layer].double(), projections.mean(0), rtol=1e-4, atol=1e-3)
        torch.testing.assert_close(artifact.calibration.std[layer].double(), projections.std(0, correction=0),
                                   rtol=1e-3, atol=1e-3)
    save_artifact(artifact, tmp_path / "readout.safetensors")
    with safe_open(str(tmp_path / "readout.safetensors"), framework="pt") as handle:
        assert set(handle.keys()) == {f"layer_{layer}.vectors" for layer in layers}
        for layer in layers:
            assert handle.get_slice(f"layer_{layer}.vectors").get_shape() == [3, loaded.hidden_size]
            assert handle.get_slice(f"layer_{layer}.vectors").get_dtype() == "F32"


def test_train_example_order_changes_no_byte_and_batch_size_nothing_material(tiny_model: LoadedModel,
                                                                             tmp_path: Path) -> None:
    examples = _many_examples()
    shuffled = examples[:]
    random.Random(3).shuffle(shuffled)
    options = TrainOptions(**CAA_RECIPE, target_layers=(1, 3), batch_size=4)
    save_artifact(train(tiny_model, examples, options), tmp_path / "a.safetensors")
    save_artifact(train(tiny_model, shuffled, options), tmp_path / "b.safetensors")
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    one = train(tiny_model, examples, TrainOptions(**CAA_RECIPE, target_layers=(1, 3), batch_size=1))
    for layer in (1, 3):
        torch.testing.assert_close(one.vectors[layer], train(tiny_model, examples, options).vectors[layer],
                                   rtol=1e-4, atol=1e-5)


def test_train_uses_only_the_train_split(tiny_model: LoadedModel) -> None:
    options = TrainOptions(**CAA_RECIPE, target_layers=(2,))
    heldout = [Example("joy", "positive", "An unrelated heldout text about nothing at all", "h", 9.0, "heldout")]
    plain, mixed = train(tiny_model, _examples(), options), train(tiny_model, _examples() + heldout, options)
    assert torch.equal(plain.vectors[2], mixed.vectors[2])
    assert mixed.record is not None and mixed.record.counts["joy"] == (3, 3)
    assert mixed.record.n_unique_texts == len(TEXTS)


def test_train_records_how_it_trained(tiny_model: LoadedModel) -> None:
    artifact = train(tiny_model, _examples(), TrainOptions(**CAA_RECIPE, target_layers=(1,)))
    record = artifact.record
    assert record is not None
    assert record.model == ModelIdentity(tiny_model.model_id, tiny_model.fingerprint, 4)
    assert record.data_sha256 == data_sha256(list(reversed(_examples())))
    assert (record.method, record.pooling, record.forward_dtype) == ("diff_of_means", PoolingSpec("last", 0), "float32")
    assert record.counts["anger"] == (1, 4) and record.layer_curve is None
    assert artifact.dtype == "float32" and default_target_layers(18) == (7, 10, 12, 15)


def test_train_rejects_out_of_range_layers_and_bad_options_before_any_forward(tiny_model: LoadedModel) -> None:
    options = TrainOptions(target_layers=(1, 9), batch_size=0, method="pca", dtype="float16")  # type: ignore[arg-type]
    with RowCounter(tiny_model) as counter, pytest.raises(TrainError) as caught:
        train(tiny_model, _examples(), options)
    message = str(caught.value)
    assert "\n" not in message and "target layers [9] out of range: the model has 4 layers (0..3)" in message
    assert "batch_size 0" in message and "method 'pca'" in message and "dtype float16" in message
    assert counter.rows == 0


def test_train_names_a_concept_without_negatives_before_any_forward(tiny_model: LoadedModel) -> None:
    examples = [e for e in _examples() if not (e.emotion == "fear" and e.polarity == "negative")]
    with RowCounter(tiny_model) as counter, pytest.raises(DirectionError, match=r"fear \(no negatives\)"):
        train(tiny_model, examples, TrainOptions(**CAA_RECIPE, target_layers=(1,)))
    assert counter.rows == 0


def test_train_refuses_a_text_that_is_both_positive_and_negative(tiny_model: LoadedModel) -> None:
    clash = Example("joy", "negative", TEXTS[0], "k0", 0.0, "train")
    with pytest.raises(TrainError, match="both positive and negative for joy"):
        training_texts(_examples() + [clash])


def test_train_in_bfloat16_keeps_float32_vectors_close_to_the_float32_run(tiny_model_dir: Path,
                                                                          tiny_model: LoadedModel) -> None:
    half = load_model(str(tiny_model_dir), dtype="bf16")
    examples = _many_examples()
    bf16 = train(half, examples, TrainOptions(**CAA_RECIPE, target_layers=(3,), dtype="bfloat16"))
    fp32 = train(tiny_model, examples, TrainOptions(**CAA_RECIPE, target_layers=(3,)))
    assert bf16.vectors[3].dtype == torch.float32 and bf16.record is not None
    assert bf16.record.forward_dtype == "bfloat16"
    assert torch.nn.functional.cosine_similarity(bf16.vectors[3], fp32.vectors[3], dim=1).min() > 0.98


def test_train_resumes_from_an_interrupted_cache_to_a_byte_identical_artifact(tiny_model: LoadedModel,
                                                                              tmp_path: Path) -> None:
    """A run stopped after two batches leaves two cache chunks; the rerun forwards only the rest and writes the
    same bytes as an uncached run. A third run, and one over fewer concepts, skip the model."""
    examples, cache_dir = _many_examples(), tmp_path / "cache"
    options = TrainOptions(**CAA_RECIPE, target_layers=(1, 3), batch_size=4, cache_dir=cache_dir)
    save_artifact(train(tiny_model, examples, TrainOptions(**CAA_RECIPE, target_layers=(1, 3), batch_size=4)),
                  tmp_path / "fresh.safetensors")
    texts = training_texts(examples).texts
    stream = iter_pooled(tiny_model, texts, [1, 3], CAA_RECIPE["pooling"], batch_size=4, cache=ActivationCache(cache_dir))
    next(stream), next(stream)
    stream.close()
    (cache_dir / next(cache_dir.iterdir()).name / ".chunk-partial.safetensors.tmp").write_bytes(b"\x00" * 10)
    with RowCounter(tiny_model) as counter:
        save_artifact(train(tiny_model, examples, options), tmp_path / "resumed.safetensors")
    assert counter.rows == len(texts) - 8
    with RowCounter(tiny_model) as counter:
        save_artifact(train(tiny_model, examples, options), tmp_path / "cached.safetensors")
        train(tiny_model, [e for e in examples if e.emotion != "calm"], options)
    assert counter.rows == 0
    fresh = (tmp_path / "fresh.safetensors").read_bytes()
    assert (tmp_path / "resumed.safetensors").read_bytes() == fresh == (tmp_path / "cached.safetensors").read_bytes()
    assert (tmp_path / "resumed.json").read_bytes() == (tmp_path / "fresh.json").read_bytes()


def test_train_with_auto_layers_trains_the_chosen_layers_and_records_the_curve(tiny_model: LoadedModel) -> None:
    """Layer choice is a train option: ``train`` runs the selection (train split only) and records its curve."""
    examples = _many_examples()
    auto = train(tiny_model, examples, TrainOptions(target_layers=AutoLayers(k=2, folds=3), batch_size=4))
    assert auto.record is not None and auto.record.layer_curve is not None
    curve = auto.record.layer_curve
    assert curve.layers == (0, 1, 2, 3) and len(curve.chosen) == 2 and auto.layers == curve.chosen
    assert (curve.folds, curve.method, curve.n_train_texts) == (3, "lda_diagonal", auto.record.n_unique_texts)
    fixed = train(tiny_model, examples, TrainOptions(target_layers=curve.chosen, batch_size=4))
    for layer in curve.chosen:
        assert torch.equal(auto.vectors[layer], fixed.vectors[layer])


def test_train_refuses_impossible_auto_layers_before_any_forward(tiny_model: LoadedModel) -> None:
    with RowCounter(tiny_model) as counter, pytest.raises(TrainError, match=r"k=9 must be within 1\.\.4.*folds=1"):
        train(tiny_model, _examples(), TrainOptions(target_layers=AutoLayers(k=9, folds=1)))
    assert counter.rows == 0


def test_train_with_auto_layers_forwards_each_text_once(tiny_model: LoadedModel) -> None:
    """Regression: selection pooled every text at every layer, then training forwarded them all again."""
    examples = _many_examples()
    with RowCounter(tiny_model) as counter:
        auto = train(tiny_model, examples, TrainOptions(target_layers=AutoLayers(k=2, folds=3), batch_size=4,
                                                        lexical="none"))
    assert auto.record is not None and counter.rows == auto.record.n_unique_texts == 40


def test_train_with_a_token_budget_gives_the_vectors_of_count_batches(tiny_model: LoadedModel) -> None:
    """Batching changes which texts share a padded forward, not what the vectors are."""
    examples = _many_examples()
    by_count = train(tiny_model, examples, TrainOptions(target_layers=(1, 3), batch_size=4, lexical="none"))
    with RowCounter(tiny_model) as counter:
        by_tokens = train(tiny_model, examples, TrainOptions(target_layers=(1, 3), batch_tokens=64, lexical="none"))
    assert counter.rows == 40
    for layer in (1, 3):
        cosines = torch.nn.functional.cosine_similarity(by_count.vectors[layer], by_tokens.vectors[layer], dim=1)
        assert cosines.min() > 0.9999
        torch.testing.assert_close(by_count.calibration.mean[layer], by_tokens.calibration.mean[layer],
                                   rtol=1e-4, atol=1e-5)


def test_train_refuses_bad_batch_caps_before_any_forward(tiny_model: LoadedModel) -> None:
    with RowCounter(tiny_model) as counter, pytest.raises(TrainError, match="batch_size 0.*batch_tokens -1"):
        train(tiny_model, _examples(), TrainOptions(batch_size=0, batch_tokens=-1))
    assert counter.rows == 0


def test_train_runs_where_the_model_is_and_returns_cpu_tensors(tiny_model: LoadedModel) -> None:
    """Statistics, directions and calibration are computed on the activations' device (the CPU here; a GPU in
    benchmarks/device_checks.py); the artifact always holds CPU tensors, and a single process records no world
    size in the manifest."""
    artifact = train(tiny_model, _examples(), TrainOptions(target_layers=(2,)))
    assert artifact.vectors[2].device.type == "cpu" and artifact.calibration is not None
    assert artifact.calibration.std[2].device.type == "cpu"
    assert artifact.record is not None and artifact.record.world_size == 1


def test_train_with_data_driven_shrinkage_and_neutral_removal_equals_fitting_the_pooled_texts(
        tiny_model: LoadedModel) -> None:
    """The streamed statistics (all texts, and the neutral ones apart) give the vectors ``fit_directions`` fits on
    the pooled texts; the vectors are orthogonal to the neutral texts' top PCs (an SVD of their rows), the
    calibration is that of the raw training texts, and the record holds the shrinkage and the PCs removed."""
    from amygdala.forward.pooled import pool_texts
    from amygdala.training.directions import fit_directions

    neutral = [Example(concept, "negative", f"plain note {j}: the bus left at {j} o'clock.", f"n{j}", 0.0, "train")
               for j in range(8) for concept in ("joy", "fear", "calm")]
    examples = _many_examples() + neutral
    options = TrainOptions(method="lda_oas", neutral_pcs=2, target_layers=(1, 3), batch_size=5, lexical="none")
    artifact = train(tiny_model, examples, options)
    data = training_texts(examples)
    pooled = pool_texts(tiny_model, data.texts, [1, 3], options.pooling)
    expected = fit_directions(pooled, data, [1, 3], "lda_oas", neutral_pcs=2)
    rows = pooled[~data.positive.any(dim=1)].double()
    assert artifact.record is not None and artifact.record.neutral_pcs == 2
    assert set(artifact.record.shrinkage or {}) == {1, 3} and 0 < min(artifact.record.shrinkage.values()) <= 1
    for position, layer in enumerate((1, 3)):
        torch.testing.assert_close(artifact.vectors[layer], expected[layer], rtol=1e-4, atol=1e-4)
        centred = rows[:, position] - rows[:, position].mean(dim=0)
        components = torch.linalg.svd(centred, full_matrices=False).Vh[:2]
        assert float((components @ artifact.vectors[layer].double().T).abs().max()) < 1e-4
        projections = pooled[:, position].double() @ artifact.vectors[layer].double().T
        torch.testing.assert_close(artifact.calibration.mean[layer].double(), projections.mean(0), rtol=1e-4, atol=1e-4)
    plain = train(tiny_model, examples, TrainOptions(method="lda_oas", target_layers=(1,)))
    assert plain.record is not None and plain.record.neutral_pcs == 0 and plain.record.shrinkage is not None
    with pytest.raises(TrainError, match="removing 9 neutral principal component.* the train split has 8"):
        train(tiny_model, examples, TrainOptions(neutral_pcs=9, target_layers=(1,)))
