"""``evaluate`` on Gemma against HF hidden states, and evaluation options that follow the training record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from sklearn.metrics import roc_auc_score

from amygdala.artifact import ModelIdentity, ReadoutArtifact, TrainingRecord
from amygdala.evaluation.report.data import report_data
from amygdala.evaluation.results import EvalOptions
from amygdala.evaluation.stage import evaluate
from amygdala.forward.models import LoadedModel
from amygdala.forward.pooling import PoolingSpec
from amygdala.training.splits import labelled_texts
from amygdala.training.stage import TrainOptions, train

from eval_helpers import examples


def test_eval_options_follow_the_manifest_unless_overridden() -> None:
    record = TrainingRecord(ModelIdentity("m"), "lda", PoolingSpec("mean", 1, False), "float32", {"a": (1, 1)}, 2, "")
    artifact = ReadoutArtifact(("a",), (1,), {1: torch.ones(1, 4) / 2}, 4, record=record)
    options = EvalOptions(batch_size=3).resolved(artifact)
    assert options.pooling is not None
    assert (options.pooling.pooling, options.pooling.skip_tokens, options.method, options.batch_size) == (
        "mean", 1, "lda", 3)
    assert EvalOptions(pooling=PoolingSpec("last", skip_tokens=0)).resolved(artifact).spec.pooling == "last"
    bare = EvalOptions().resolved(ReadoutArtifact(("a",), (1,), {1: torch.ones(1, 4) / 2}, 4))
    assert (bare.pooling, bare.method) == (PoolingSpec("mean_last", 1), "lda_diagonal"), "one default: training's"


def _hf_mean_residual(loaded: LoadedModel, text: str, layers: tuple[int, ...]) -> torch.Tensor:
    """Independent reference: HF ``hidden_states[layer + 1]`` of one unpadded text, averaged over its tokens but
    the first (BOS)."""
    ids = torch.tensor([loaded.tokenizer(text).input_ids])
    with torch.inference_mode():
        states = loaded.model(input_ids=ids, output_hidden_states=True).hidden_states
    return torch.stack([states[layer + 1][0, 1:].float().mean(dim=0) for layer in layers])


@pytest.mark.slow
def test_evaluate_matches_auroc_and_top1_from_hf_hidden_states(gemma: LoadedModel) -> None:
    rows = examples()
    artifact = train(gemma, rows, TrainOptions(target_layers=(4, 9), pooling=PoolingSpec("mean", skip_tokens=1)))
    result = evaluate(gemma, artifact, rows, EvalOptions(), texts=[("x", "Hello there.")])
    held = labelled_texts(rows, artifact.concepts, "heldout")
    pooled = torch.stack([_hf_mean_residual(gemma, text, artifact.layers) for text in held.texts])
    raw = torch.einsum("nlh,lch->nlc", pooled, artifact.stacked())
    for score in result.scores:
        c, i = artifact.concepts.index(score.concept), artifact.layers.index(score.layer)
        labels = held.positive[:, c] | held.negative[:, c]
        expected = roc_auc_score(held.positive[labels, c].numpy(), raw[labels, i, c].numpy())
        assert score.auroc == pytest.approx(expected, abs=1e-9), (score.concept, score.layer)
    calibration = artifact.calibration
    z = torch.stack([(raw[:, i] - calibration.mean[layer]) / calibration.std[layer]
                     for i, layer in enumerate(artifact.layers)], dim=1).mean(dim=1)
    pairs = held.positive.nonzero().tolist()
    top1 = sum(int(z[row].argmax()) == c for row, c in pairs) / len(pairs)  # texts here have one label each
    assert result.summary()["top1"] == pytest.approx(top1)
    assert result.summary()["mean_auroc"] > 0.5 and len(result.readouts[0].tokens) == result.readouts[0].values.shape[0]


def test_evaluate_reuses_the_activations_training_cached(tiny_model: LoadedModel, tmp_path: Path) -> None:
    """One forward per text for train -> eval: with train's cache dir, eval forwards only the held-out texts, and
    measures what a cache-less eval measures."""
    rows = examples()
    options = TrainOptions(target_layers=(1, 3), cache_dir=tmp_path / "cache")
    artifact = train(tiny_model, rows, options)
    forwarded: list[int] = []
    handle = tiny_model.layers[0].register_forward_hook(lambda _m, inputs, _o: forwarded.append(inputs[0].shape[0]))
    try:
        cached = evaluate(tiny_model, artifact, rows, EvalOptions(cache_dir=tmp_path / "cache"))
    finally:
        handle.remove()
    assert sum(forwarded) == cached.n_heldout_texts, "no train text is forwarded again"
    fresh = evaluate(tiny_model, artifact, rows)
    cached_summary, fresh_summary = cached.summary(), fresh.summary()
    assert cached_summary.keys() == fresh_summary.keys()
    for key, value in fresh_summary.items():
        if isinstance(value, float):
            assert cached_summary[key] == pytest.approx(value, nan_ok=True), key
        else:  # the worst (concept, layer), the layers and the counts: the same, not close
            assert cached_summary[key] == value, key


def test_evaluate_with_folds_and_valence_check_forwards_each_new_text_once(tiny_model: LoadedModel,
                                                                           tmp_path: Path) -> None:
    """The cross-validation reuses the pooled held-out and train texts (no forward per fold), and the rated
    sentences are pooled in the same pass: with train's cache, only held-out texts and sentences are forwarded."""
    rows = examples()
    artifact = train(tiny_model, rows, TrainOptions(target_layers=(1, 3), cache_dir=tmp_path / "cache"))
    forwarded: list[int] = []
    handle = tiny_model.layers[0].register_forward_hook(lambda _m, inputs, _o: forwarded.append(inputs[0].shape[0]))
    try:
        result = evaluate(tiny_model, artifact, rows, EvalOptions(cache_dir=tmp_path / "cache", folds=4, n_boot=50,
                                                                 valence_check=True, valence_sentences=20))
    finally:
        handle.remove()
    assert sum(forwarded) == result.n_heldout_texts + 20
    assert result.crossval is not None and result.valence is not None and result.lexical is None
    assert len(result.crossval.fold) == result.n_heldout_texts + result.n_train_texts
    assert (result.valence.n_sentences, result.valence.positive_concepts) == (20, ("joy",))
    report = json.loads(json.dumps(report_data(result)))  # report.json holds the figures, not the bootstrap draws
    assert report["valence_check"]["rho"]["estimate"] == pytest.approx(result.valence.rho.estimate, abs=1e-6)
    assert "rho_replicates" not in report["valence_check"]
