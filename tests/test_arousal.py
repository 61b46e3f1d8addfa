"""The arousal check: the attributed EmoBank slice and concept table, the PCA helper on a planted 2-D structure,
and a real Gemma forward over the slice giving a finite rho that equals a by-hand computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from amygdala.evaluation.arousal import (
    ArousalError,
    arousal_check,
    arousal_sentences,
    concept_arousal,
    paired_arousal_rho,
)
from amygdala.evaluation.pca import component_r, principal_components
from amygdala.forward.models import LoadedModel
from amygdala.forward.pooled import pool_texts
from amygdala.forward.pooling import PoolingSpec
from amygdala.training.directions import fit_directions
from amygdala.training.splits import labelled_texts

SAMPLE = ["amused", "anxious", "calm", "excited", "frustrated", "grateful", "guilty", "sad", "tired"]


def test_arousal_sentences_are_the_attributed_emobank_slice() -> None:
    corpus = arousal_sentences()
    assert len(corpus.texts) == len(set(corpus.ids)) == 600
    assert all(1 <= a <= 5 and 1 <= v <= 5 for a, v in zip(corpus.arousal, corpus.valence))
    assert all(30 <= len(text) <= 250 for text in corpus.texts)
    assert np.std(corpus.arousal) > 0.1
    assert arousal_sentences(5).texts == corpus.texts[:5]


def test_concept_arousal_orders_calm_below_excited_and_skips_uncovered_concepts() -> None:
    arousal = concept_arousal(["calm", "excited", "clarity", "relaxed"])
    assert set(arousal) == {"calm", "excited", "relaxed"}  # clarity: too few EmoBank sentences name it
    assert arousal["calm"] < 3.0 < arousal["excited"] and arousal["relaxed"] < arousal["excited"]


def test_principal_components_recover_a_planted_two_dimensional_structure() -> None:
    generator = torch.Generator().manual_seed(0)
    valence, arousal = torch.randn(40, generator=generator), torch.randn(40, generator=generator)
    basis = torch.linalg.qr(torch.randn(64, 2, generator=generator)).Q.T  # two orthonormal directions
    vectors = 3 * valence[:, None] * basis[0] + 1.5 * arousal[:, None] * basis[1] \
        + 0.05 * torch.randn(40, 64, generator=generator)
    components = principal_components(vectors, 2)
    assert component_r(components, 0, valence.numpy()) > 0.99 and component_r(components, 1, arousal.numpy()) > 0.99
    assert component_r(components, 0, arousal.numpy()) < 0.3
    assert float(components.explained.sum()) > 0.95 and components.explained[0] > components.explained[1]
    assert math.isnan(component_r(principal_components(vectors[:2], 2), 0, valence[:2].numpy()))


def test_arousal_check_needs_three_covered_concepts() -> None:
    vectors = {3: torch.nn.functional.normalize(torch.randn(2, 8), dim=1)}
    corpus = arousal_sentences(4)
    with pytest.raises(ArousalError, match="have an EmoBank arousal"):
        arousal_check(vectors, ["calm", "clarity"], [3], torch.randn(4, 1, 8), corpus)


@pytest.mark.slow
def test_arousal_check_on_the_real_slice_is_finite_and_matches_a_by_hand_spearman(gemma: LoadedModel) -> None:
    from amygdala.extraction.scoring import ExtractOptions
    from amygdala.extraction.sources.graph_file import bundled_sample_path, read_graph_file
    from amygdala.extraction.stage import select_examples

    selection = select_examples(read_graph_file(bundled_sample_path()), ExtractOptions())
    examples = [e for emotion in SAMPLE for e in selection.examples[emotion]]
    data = labelled_texts(examples, SAMPLE, None)
    layers, spec = (9,), PoolingSpec("mean", 1)
    vectors = fit_directions(pool_texts(gemma, data.texts, layers, spec), data, layers, "lda_diagonal")
    corpus = arousal_sentences(120)
    pooled = pool_texts(gemma, corpus.texts, layers, spec)
    check = arousal_check(vectors, data.concepts, layers, pooled, corpus, n_boot=200)
    table = concept_arousal(SAMPLE)
    weights = torch.tensor([table[c] for c in SAMPLE], dtype=torch.float64)
    axis = (weights - weights.mean()) @ vectors[9].double()
    expected = spearmanr((pooled[:, 0].double() @ axis).numpy(), corpus.arousal).statistic
    assert check.rho.estimate == pytest.approx(expected, abs=1e-9)
    assert math.isfinite(check.rho.estimate) and check.rho.low <= check.rho.estimate <= check.rho.high
    assert all(math.isfinite(value) for value in check.pc_r.values())
    assert check.to_json()["n_covered"] == len(SAMPLE)
    assert paired_arousal_rho(check, check).difference.estimate == 0.0
