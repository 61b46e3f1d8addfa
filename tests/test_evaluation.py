"""Evaluation metrics against independent references, and ``evaluate`` on Gemma against HF hidden states."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from amygdala.artifact import ModelIdentity, ReadoutArtifact, TrainingRecord
from amygdala.directions import fit_directions
from amygdala.evaluation import EvalOptions, auroc, cohens_d, evaluate, explained_by_others, filtered_ranks, phi_matrix
from amygdala.models import LoadedModel
from amygdala.pooling import PoolingSpec
from amygdala.splits import LabelledTexts, key_folds, labelled_texts
from amygdala.training import TrainOptions, train

from eval_helpers import examples


def _labelled(positive: list[list[bool]], negative: list[list[bool]] | None = None) -> LabelledTexts:
    pos = torch.tensor(positive)
    neg = ~pos if negative is None else torch.tensor(negative)
    return LabelledTexts(tuple(f"c{c}" for c in range(pos.shape[1])), tuple(f"t{i}" for i in range(len(pos))),
                         tuple(f"k{i}" for i in range(len(pos))), pos, neg)


def test_auroc_is_one_on_planted_separation_and_half_on_noise() -> None:
    rng = np.random.default_rng(0)
    assert auroc(rng.random(50) + 1.0, rng.random(80)) == 1.0
    assert auroc(rng.normal(size=4000), rng.normal(size=4000)) == pytest.approx(0.5, abs=0.03)
    assert math.isnan(auroc(np.array([1.0]), np.array([])))


def test_cohens_d_matches_the_pooled_std_formula() -> None:
    # means 4 and 2, sample variances 4 and 1, pooled variance (2*4 + 2*1) / 4 = 2.5
    assert cohens_d(np.array([2.0, 4.0, 6.0]), np.array([1.0, 2.0, 3.0])) == pytest.approx(2 / math.sqrt(2.5))
    assert math.isnan(cohens_d(np.array([1.0]), np.array([1.0])))


def test_explained_by_others_flags_a_vector_built_from_two_others() -> None:
    generator = torch.Generator().manual_seed(1)
    base = torch.randn((4, 256), generator=generator)
    combined = 0.6 * base[0] / base[0].norm() + 0.8 * base[1] / base[1].norm()
    vectors = torch.cat([base, combined[None]])
    vectors = vectors / vectors.norm(dim=1, keepdim=True)
    r2 = explained_by_others(vectors, alpha=0.01)
    assert [value >= 0.9 for value in r2] == [True, True, False, False, True]  # a and b are in span(e, the other)
    assert max(r2[2], r2[3]) < 0.2


def test_phi_matrix_equals_pearson_correlation_of_labels() -> None:
    labels = torch.tensor(np.random.default_rng(2).random((40, 4)) > 0.6)
    expected = np.corrcoef(labels.numpy().astype(float), rowvar=False)
    assert np.allclose(phi_matrix(labels).numpy(), expected)


def test_filtered_ranks_ignore_the_texts_other_positive_concepts() -> None:
    data = _labelled([[True, True, False], [False, True, False]])
    z = torch.tensor([[1.0, 5.0, 2.0], [0.0, 1.0, 3.0]])
    truths, ranks, picks = filtered_ranks(z, data)
    # text 0: concept 0 loses only to concept 2 (concept 1 is also its label); concept 1 wins outright
    assert (truths, ranks, picks) == ([0, 1, 1], [2, 1, 2], [2, 1, 2])


def test_key_folds_keep_a_node_in_one_fold_and_depend_on_the_seed() -> None:
    keys = [f"n{i // 3}" for i in range(60)]
    folds = key_folds(keys, 4, seed=0)
    assert sorted(row for fold in folds for row in fold) == list(range(60))
    fold_of_key = [{keys[row] for row in fold} for fold in folds]
    assert all(a.isdisjoint(b) for i, a in enumerate(fold_of_key) for b in fold_of_key[i + 1:])
    assert folds == key_folds(keys, 4, seed=0) != key_folds(keys, 4, seed=1)


def test_fit_directions_recovers_a_planted_direction_and_leaves_unfit_concepts_nan() -> None:
    generator = torch.Generator().manual_seed(3)
    pooled = torch.randn((80, 1, 32), generator=generator)
    planted = torch.zeros(32)
    planted[5] = 1.0
    positive = torch.zeros((80, 2), dtype=torch.bool)
    positive[:40, 0] = True
    pooled[:40, 0] += 3 * planted
    negative = torch.stack([~positive[:, 0], torch.ones(80, dtype=torch.bool)], dim=1)  # "empty": no positives
    data = LabelledTexts(("planted", "empty"), tuple(map(str, range(80))), tuple(map(str, range(80))), positive, negative)
    vectors = fit_directions(pooled, data, [7], "diff_of_means")[7]
    assert float(vectors[0] @ planted) > 0.9
    assert bool(vectors[1].isnan().all())


def test_eval_options_follow_the_manifest_unless_overridden() -> None:
    record = TrainingRecord(ModelIdentity("m"), "lda", PoolingSpec("mean", 1, False), "float32", {"a": (1, 1)}, 2, "")
    artifact = ReadoutArtifact(("a",), (1,), {1: torch.ones(1, 4) / 2}, 4, record=record)
    options = EvalOptions(batch_size=3).resolved(artifact)
    assert options.pooling is not None
    assert (options.pooling.pooling, options.pooling.skip_tokens, options.method, options.batch_size) == (
        "mean", 1, "lda", 3)
    assert EvalOptions(pooling=PoolingSpec("last", skip_tokens=0)).resolved(artifact).spec.pooling == "last"
    bare = EvalOptions().resolved(ReadoutArtifact(("a",), (1,), {1: torch.ones(1, 4) / 2}, 4))
    assert (bare.pooling, bare.method) == (PoolingSpec("mean", 1), "lda_diagonal"), "one default: training's"


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
