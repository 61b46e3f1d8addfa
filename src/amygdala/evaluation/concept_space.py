"""The concept space: the first two principal components of all concept vectors against lexicon ratings.

Per layer, the concepts' unit vectors ``[C, H]`` are centred and decomposed (SVD); each concept's PC1 and PC2
scores are correlated (Pearson; the sign of a component is arbitrary, so |r|) with every lexicon of
``LEXICONS`` over the concepts the lexicon covers. The published reference (Anthropic's emotion study, 171
emotions) is r = 0.81 for PC1 against valence; ``amygdala synthesize --emotions all171`` gives vectors for the
whole list. Needs no forward pass: it reads the vectors alone.

``LEXICONS`` is the hook for more axes: a function ``concepts -> {concept: rating}`` under a name (valence now,
from the bundled VADER lexicon: ``valence.concept_valence``); an arousal lexicon is one more entry, with its
published reference in ``PUBLISHED_R`` if there is one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import pearsonr

from amygdala.evaluation.valence import PUBLISHED_PC1_R, concept_valence

#: Lexicon name -> the rating of each covered concept; add an entry for another axis (e.g. arousal).
LEXICONS: dict[str, Callable[[Sequence[str]], dict[str, float]]] = {"valence": concept_valence}
#: Lexicon name -> the published |r| of PC1 against it (171 emotions).
PUBLISHED_R: dict[str, float] = {"valence": PUBLISHED_PC1_R}
MIN_COVERED = 3


@dataclass(frozen=True)
class LayerSpace:
    """One layer: each concept's PC1 and PC2 score, the share of variance the two explain, and per lexicon the
    |r| of PC1 and of PC2 with its ratings."""

    layer: int
    pc1: tuple[float, ...]
    pc2: tuple[float, ...]
    explained: tuple[float, float]
    r: dict[str, tuple[float, float]]


@dataclass(frozen=True)
class ConceptSpace:
    """Every layer's components, the lexicon ratings of the covered concepts and the published references."""

    concepts: tuple[str, ...]
    layers: tuple[LayerSpace, ...]
    ratings: dict[str, dict[str, float]]
    published: dict[str, float]

    def best(self, lexicon: str = "valence") -> LayerSpace:
        """The layer whose PC1 follows ``lexicon`` best."""
        return max(self.layers, key=lambda s: -1.0 if math.isnan(s.r[lexicon][0]) else s.r[lexicon][0])

    def to_json(self) -> dict[str, object]:
        return {"concepts": list(self.concepts), "ratings": self.ratings, "published_r": self.published,
                "layers": [{"layer": s.layer, "pc1": list(s.pc1), "pc2": list(s.pc2),
                            "explained": list(s.explained), "r": {k: list(v) for k, v in s.r.items()}}
                           for s in self.layers]}


def _abs_r(scores: np.ndarray, concepts: Sequence[str], ratings: Mapping[str, float]) -> float:
    covered = [i for i, concept in enumerate(concepts) if concept in ratings]
    values = np.array([ratings[concepts[i]] for i in covered])
    if len(covered) < MIN_COVERED or np.ptp(values) == 0 or np.ptp(scores[covered]) == 0:
        return math.nan
    return abs(float(pearsonr(scores[covered], values).statistic))


def _layer_space(layer: int, vectors: torch.Tensor, concepts: Sequence[str],
                 ratings: Mapping[str, Mapping[str, float]]) -> LayerSpace:
    centred = vectors.double() - vectors.double().mean(dim=0)
    _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
    scores = (centred @ vh[:2].T).numpy()
    if scores.shape[1] < 2:
        scores = np.c_[scores, np.zeros(len(concepts))]
    total = float((singular ** 2).sum()) or 1.0
    explained = tuple(float(s ** 2) / total for s in (list(singular[:2]) + [0.0])[:2])
    r = {name: (_abs_r(scores[:, 0], concepts, rated), _abs_r(scores[:, 1], concepts, rated))
         for name, rated in ratings.items()}
    return LayerSpace(layer, tuple(scores[:, 0].tolist()), tuple(scores[:, 1].tolist()),
                      (explained[0], explained[1]), r)


def concept_space(vectors: Mapping[int, torch.Tensor], concepts: Sequence[str],
                  layers: Sequence[int]) -> ConceptSpace | None:
    """PC1/PC2 against every lexicon at each layer; None when no lexicon covers ``MIN_COVERED`` concepts."""
    ratings = {name: lexicon(concepts) for name, lexicon in LEXICONS.items()}
    if len(concepts) < MIN_COVERED or all(len(rated) < MIN_COVERED for rated in ratings.values()):
        return None
    spaces = tuple(_layer_space(layer, vectors[layer], concepts, ratings) for layer in layers)
    return ConceptSpace(tuple(concepts), spaces, ratings, {k: v for k, v in PUBLISHED_R.items() if k in ratings})


__all__ = ["LEXICONS", "PUBLISHED_R", "ConceptSpace", "LayerSpace", "concept_space"]
