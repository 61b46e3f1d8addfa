"""The valence check: the documented concept-valence mapping, and a real Gemma forward over a slice of the
human-rated sentences checked against a by-hand Spearman computation and VADER's own scores, and the paired rho
difference over the same sentence draws."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from amygdala.evaluation.metrics import PairingError
from amygdala.evaluation.valence import (
    ValenceCheck,
    ValenceError,
    concept_valence,
    paired_rho,
    rated_sentences,
    valence_check,
)
from amygdala.forward.models import LoadedModel
from amygdala.forward.pooled import pool_texts
from amygdala.forward.pooling import PoolingSpec
from amygdala.training.directions import fit_directions
from amygdala.training.splits import labelled_texts

from eval_helpers import POSITIVES, examples

LAYERS = (4, 9)


def test_concept_valence_takes_the_name_then_the_word_forms_the_lexicon_lists() -> None:
    # joy, clarity: their own entries; curiosity: only its form 'curious' is listed; nostalgic: nothing listed
    assert concept_valence(["joy", "clarity", "curiosity", "nostalgic"]) == {"joy": 2.8, "clarity": 1.7,
                                                                            "curiosity": 1.3}


def test_rated_sentences_are_the_attributed_movie_review_slice() -> None:
    corpus = rated_sentences()
    assert len(corpus.texts) == len(set(corpus.ids)) == 600
    assert all(-4 <= rating <= 4 for rating in corpus.ratings)
    assert rated_sentences(5).texts == corpus.texts[:5]


@pytest.mark.slow
def test_valence_check_on_real_sentences_matches_a_by_hand_spearman(gemma: LoadedModel) -> None:
    data = labelled_texts(examples(), sorted(POSITIVES), None)
    spec = PoolingSpec("mean", 1)
    vectors = fit_directions(pool_texts(gemma, data.texts, LAYERS, spec), data, LAYERS, "lda_diagonal")
    corpus = rated_sentences(60)
    pooled = pool_texts(gemma, corpus.texts, LAYERS, spec)
    check = valence_check(vectors, data.concepts, LAYERS, pooled, corpus, n_boot=300)
    assert (check.positive_concepts, check.negative_concepts, check.n_sentences) == (("joy",), ("anger", "fear"), 60)
    joy, anger, fear = (data.concepts.index(name) for name in ("joy", "anger", "fear"))
    per_layer = []
    for position, layer in enumerate(LAYERS):
        axis = vectors[layer][joy].double() - (vectors[layer][anger].double() + vectors[layer][fear].double()) / 2
        projection = (pooled[:, position].double() @ axis).numpy()
        per_layer.append((projection - projection.mean()) / projection.std())
    expected = spearmanr(np.mean(per_layer, axis=0), corpus.ratings).statistic
    assert check.rho.estimate == pytest.approx(expected)
    assert check.rho.low <= check.rho.estimate <= check.rho.high
    assert check.rho.estimate > 0.2, "joy minus anger/fear should order the reviews by human valence"
    analyser = SentimentIntensityAnalyzer()
    vader = [analyser.polarity_scores(text)["compound"] for text in corpus.texts]
    assert check.vader_rho == pytest.approx(spearmanr(vader, corpus.ratings).statistic)
    assert 0 <= check.pc1_r <= 1


def test_valence_check_refuses_concepts_of_one_valence() -> None:
    corpus = rated_sentences(4)
    vectors = {0: torch.nn.functional.normalize(torch.ones((2, 8)), dim=1)}
    with pytest.raises(ValenceError, match="2 positive and 0 negative"):
        valence_check(vectors, ["joy", "calm"], [0], torch.zeros((4, 1, 8)), corpus)


def test_paired_rho_is_zero_for_the_same_axis_and_above_zero_for_a_planted_gain() -> None:
    corpus = rated_sentences(120)
    ratings = torch.tensor(corpus.ratings)
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn((len(ratings), 1, 2), generator=generator)
    vectors = {0: torch.eye(2)}  # joy = e0, anger = e1: the axis is e0 - e1
    concepts = ("joy", "anger")

    def check(signal: float, seed: int = 0) -> ValenceCheck:
        pooled = noise.clone()
        pooled[:, 0, 0] += signal * ratings
        return valence_check(vectors, concepts, (0,), pooled, corpus, n_boot=200, seed=seed)

    weak = check(0.3)
    same = paired_rho(weak, check(0.3))
    assert (same.difference.estimate, same.difference.low, same.difference.high, same.sign) == (0, 0, 0, 0)
    gain = paired_rho(check(1.0), weak)
    assert gain.difference.estimate == pytest.approx(gain.a - gain.b)
    assert 0 < gain.difference.low <= gain.difference.estimate <= gain.difference.high and gain.sign == 1
    with pytest.raises(PairingError, match="same n_boot and seed"):
        paired_rho(weak, check(0.3, seed=1))
