"""Out-of-distribution valence check: do the trained vectors order real, human-rated sentences by valence?

- **Concept valence** (``concept_valence``), a documented mapping: the VADER lexicon's mean human valence
  (-4..+4; ``vader_lexicon.txt`` of the ``vaderSentiment`` package, MIT) of the concept's name; when the lexicon
  lacks the name, the mean over the concept's word forms it lists (``emotions.word_forms``: ``clarity`` has no
  entry, ``clear`` and ``clarify`` do). Concepts without any listed form are not covered.
- **Valence axis**, per layer: the mean of the unit vectors of the concepts with valence >= ``NEUTRAL_BAND``
  minus the mean of those with valence <= -``NEUTRAL_BAND`` (concepts in between count as neutral).
- **rho**: Spearman's rank correlation between the human mean ratings of the sentences and their score on the
  axis (the projection, z-scored over the sentences at each layer, averaged over the layers), with a bootstrap
  95% CI over the sentences (``n_boot`` draws seeded by ``seed``: two checks on the same corpus with the same
  ``n_boot`` and ``seed`` share them, so ``paired_rho`` gives one's rho minus the other's with the CI of the
  difference over the same draws); ``per_layer`` holds each layer's rho alone. The reference is ``vader_rho``: the VADER
  analyser's compound score (lexicon plus rules, no model) on the same sentences.
- **PC1 vs lexicon valence**, per layer: Pearson r between the covered concepts' scores on the first principal
  component of their vectors and their lexicon valence; the sign of a principal component is arbitrary, so |r|
  is reported. Published reference: r = 0.81 over 171 emotions (``PUBLISHED_PC1_R``).

The ratings: ``rated_sentences`` reads ``data/vader_movie_reviews.tsv``, 600 movie-review sentences (prose, not
tweets) with their mean ratings from the VADER ground truth (Hutto & Gilbert 2014; MIT; see
``data/VADER_LICENSE.txt``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import torch
from scipy.stats import pearsonr

from amygdala.errors import AmygdalaError
from amygdala.evaluation.metrics import (
    Interval,
    PairedDifference,
    PairingError,
    paired_difference,
    rho_interval,
    spearman,
)
from amygdala.extraction.emotions import word_forms

NEUTRAL_BAND = 0.5
PUBLISHED_PC1_R = 0.81
CORPUS_FILE = "vader_movie_reviews.tsv"
CORPUS_NAME = "VADER ground truth, movie-review sentences (Hutto & Gilbert 2014)"


class ValenceError(AmygdalaError):
    """The concepts or the corpus cannot give a valence check."""


@dataclass(frozen=True)
class RatedSentences:
    """Sentences with their mean human valence rating."""

    name: str
    ids: tuple[str, ...]
    ratings: tuple[float, ...]
    texts: tuple[str, ...]


@dataclass(frozen=True)
class LayerValence:
    """One layer: Spearman rho of the axis against the ratings, and |r| of PC1 against the lexicon valence."""

    layer: int
    rho: float
    pc1_r: float


@dataclass(frozen=True)
class ValenceCheck:
    """Every figure of ``valence_check`` (see the module docstring); ``rho_replicates [n_boot]``: rho on each
    bootstrap draw of the sentences (``seed``), for ``paired_rho``."""

    corpus: str
    n_sentences: int
    rho: Interval
    vader_rho: float
    pc1_r: float
    per_layer: tuple[LayerValence, ...]
    concept_valence: tuple[tuple[str, float], ...]
    positive_concepts: tuple[str, ...]
    negative_concepts: tuple[str, ...]
    n_concepts: int
    published_pc1_r: float = PUBLISHED_PC1_R
    seed: int = 0
    rho_replicates: torch.Tensor | None = None

    def summary(self) -> dict[str, Any]:
        return {"corpus": self.corpus, "n_sentences": self.n_sentences, "rho": self.rho.estimate,
                "rho_ci": [self.rho.low, self.rho.high], "vader_rho": self.vader_rho, "pc1_r": self.pc1_r,
                "published_pc1_r": self.published_pc1_r, "n_covered": len(self.concept_valence),
                "n_concepts": self.n_concepts}


def rated_sentences(limit: int | None = None) -> RatedSentences:
    """The bundled movie-review sentences (the first ``limit`` of them; None: all 600)."""
    text = resources.files("amygdala").joinpath("data", CORPUS_FILE).read_text(encoding="utf-8")
    rows = [line.split("\t", 2) for line in text.splitlines()[1:] if line.strip()][:limit]
    return RatedSentences(CORPUS_NAME, tuple(r[0] for r in rows), tuple(float(r[1]) for r in rows),
                          tuple(r[2] for r in rows))


@cache
def vader_lexicon() -> dict[str, float]:
    """Word -> mean valence rating, from the ``vaderSentiment`` package's lexicon."""
    text = resources.files("vaderSentiment").joinpath("vader_lexicon.txt").read_text(encoding="utf-8")
    return {fields[0]: float(fields[1]) for fields in (line.split("\t") for line in text.splitlines()) if
            len(fields) > 1}


def concept_valence(concepts: Sequence[str]) -> dict[str, float]:
    """Lexicon valence of each covered concept (its name's, else the mean of its listed word forms')."""
    lexicon, valence = vader_lexicon(), {}
    for concept in concepts:
        forms = [form for form in word_forms(concept) if form in lexicon]
        if concept in lexicon:
            valence[concept] = lexicon[concept]
        elif forms:
            valence[concept] = sum(lexicon[form] for form in forms) / len(forms)
    return valence


def vader_scores(texts: Sequence[str]) -> list[float]:
    """The VADER analyser's compound score of each text (the lexicon-and-rules reference)."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyser = SentimentIntensityAnalyzer()
    return [analyser.polarity_scores(text)["compound"] for text in texts]


@cache
def vader_rho(corpus: RatedSentences) -> float:
    """The reference: Spearman rho of the VADER analyser's scores against the ratings (once per corpus, however
    many vector sets are checked on it)."""
    return spearman(np.asarray(vader_scores(corpus.texts)), np.asarray(corpus.ratings))


def _pc1_r(vectors: torch.Tensor, valence: np.ndarray) -> float:
    """|Pearson r| between the concepts' PC1 scores and their valence (NaN under 3 concepts)."""
    if len(valence) < 3 or np.ptp(valence) == 0:
        return math.nan
    centred = vectors.double() - vectors.double().mean(dim=0)
    pc1 = torch.linalg.svd(centred, full_matrices=False).Vh[0]
    return abs(float(pearsonr((centred @ pc1).numpy(), valence).statistic))


def _axis(vectors: torch.Tensor, concepts: Sequence[str], positive: Sequence[str],
          negative: Sequence[str]) -> torch.Tensor:
    def mean_of(names: Sequence[str]) -> torch.Tensor:
        return vectors[[concepts.index(name) for name in names]].double().mean(dim=0)

    return mean_of(positive) - mean_of(negative)


def valence_check(vectors: Mapping[int, torch.Tensor], concepts: Sequence[str], layers: Sequence[int],
                  pooled: torch.Tensor, corpus: RatedSentences, *, n_boot: int = 1000,
                  seed: int = 0) -> ValenceCheck:
    """The check of unit ``vectors {layer: [n_concepts, hidden]}`` (rows as ``concepts``) on ``corpus``, whose
    sentences' pooled activations are ``pooled [n_sentences, len(layers), hidden]``, pooled as the vectors were
    trained. Concepts whose vector is NaN at some layer are left out."""
    fitted = [c for i, c in enumerate(concepts) if all(bool(vectors[layer][i].isfinite().all()) for layer in layers)]
    valence = concept_valence(fitted)
    positive = tuple(c for c in fitted if valence.get(c, 0.0) >= NEUTRAL_BAND)
    negative = tuple(c for c in fitted if valence.get(c, 0.0) <= -NEUTRAL_BAND)
    problems = [] if positive and negative else [
        f"the lexicon gives {len(positive)} positive and {len(negative)} negative concept(s) of "
        f"{', '.join(concepts)}; the axis needs at least one of each"]
    if pooled.shape[:2] != (len(corpus.texts), len(layers)):
        problems.append(f"pooled activations {tuple(pooled.shape)} must be [{len(corpus.texts)} sentences, "
                        f"{len(layers)} layers, hidden]")
    if problems:
        raise ValenceError("valence check: " + "; ".join(problems))
    ratings, covered = np.asarray(corpus.ratings), [c for c in fitted if c in valence]
    per_layer, projections = [], []
    for position, layer in enumerate(layers):
        projection = pooled[:, position].double() @ _axis(vectors[layer], concepts, positive, negative)
        projections.append((projection - projection.mean()) / projection.std(correction=0))
        rows = vectors[layer][[concepts.index(c) for c in covered]]
        per_layer.append(LayerValence(layer, spearman(projection.numpy(), ratings),
                                      _pc1_r(rows, np.asarray([valence[c] for c in covered]))))
    score = torch.stack(projections).mean(dim=0).numpy()
    pc1 = [entry.pc1_r for entry in per_layer if not math.isnan(entry.pc1_r)]
    rho, replicates = rho_interval(score, ratings, n_boot, seed)
    return ValenceCheck(corpus.name, len(ratings), rho, vader_rho(corpus),
                        sum(pc1) / len(pc1) if pc1 else math.nan, tuple(per_layer),
                        tuple((c, valence[c]) for c in covered), positive, negative, len(concepts),
                        seed=seed, rho_replicates=replicates)


def paired_rho(a: ValenceCheck, b: ValenceCheck) -> PairedDifference:
    """``a.rho`` minus ``b.rho`` with the CI over the same draws of the sentences: both checks must be on the
    same corpus with the same ``n_boot`` and ``seed``; the vectors and the sentences' pooling may differ."""
    if (a.corpus, a.n_sentences, a.seed) != (b.corpus, b.n_sentences, b.seed) or a.rho_replicates is None \
            or b.rho_replicates is None:
        raise PairingError("paired valence rho needs two checks on the same corpus with the same n_boot and seed")
    return paired_difference(a.rho.estimate, a.rho_replicates, b.rho.estimate, b.rho_replicates)
