"""Arousal beside valence: do the vectors order human-rated sentences by arousal, and do the first two principal
components of the concept vectors follow valence and arousal?

- **Sentences**: ``data/emobank_sentences.tsv``, 600 EmoBank sentences (Buechel & Hahn 2017; CC BY-SA 4.0, see
  ``data/EMOBANK_LICENSE.txt``) with their mean human valence and arousal (1..5; arousal: calm .. excited).
- **Concept arousal** (``concept_arousal``): no permissively licensed word-arousal norm was found (NRC VAD is
  research-only; Warriner et al. 2013 gives no open licence), so a concept's arousal is the mean EmoBank arousal
  of the sentences outside the slice that name it (``data/emobank_concept_arousal.tsv``, 82 of the 171
  reference concepts). A corpus proxy: "kind" or "pleased" are named in calm prose as often as in excited prose.
- **Arousal axis**, per layer: ``sum_c (a_c - mean a) v_c`` over the covered concepts (arousal is continuous and
  centred on the corpus' calm middle, so the axis weights rather than splits). **rho**: Spearman's rank
  correlation of the sentences' score on it (projection z-scored over the sentences per layer, averaged over
  the layers) against their arousal, with a seeded bootstrap 95% CI over the sentences (``paired_arousal_rho``
  pairs two checks over the same draws). ``valence_rho``: the valence check's axis (``valence``: mean of the
  positive minus the negative concepts' vectors) against the same sentences' valence, a second valence corpus.
- **PC1 / PC2** (``pca.principal_components`` of the covered concepts' vectors, per layer, averaged): |Pearson
  r| of each against lexicon valence (``valence.concept_valence``, VADER, MIT) and against concept arousal.
  Published reference over 171 emotions: PC1 vs valence r = 0.81, PC2 vs arousal r = 0.66.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from amygdala.errors import AmygdalaError
from amygdala.evaluation.metrics import (
    Interval,
    PairedDifference,
    PairingError,
    paired_difference,
    rho_interval,
    spearman,
)
from amygdala.evaluation.pca import component_r, principal_components
from amygdala.evaluation.valence import NEUTRAL_BAND, PUBLISHED_PC1_R, concept_valence

if TYPE_CHECKING:
    from amygdala.artifact import ReadoutArtifact
    from amygdala.forward.activation_cache import ActivationCache
    from amygdala.forward.models import LoadedModel
    from amygdala.forward.pooling import PoolingSpec

SENTENCES_FILE = "emobank_sentences.tsv"
CONCEPT_FILE = "emobank_concept_arousal.tsv"
CORPUS_NAME = "EmoBank sentences (Buechel & Hahn 2017), mean reader/writer ratings"
PUBLISHED_PC1_VALENCE_R = PUBLISHED_PC1_R
PUBLISHED_PC2_AROUSAL_R = 0.66
MIN_CONCEPTS = 3


class ArousalError(AmygdalaError):
    """The concepts or the sentences cannot give an arousal check."""


@dataclass(frozen=True)
class ArousalSentences:
    """Sentences with their mean human arousal and valence ratings."""

    name: str
    ids: tuple[str, ...]
    arousal: tuple[float, ...]
    valence: tuple[float, ...]
    texts: tuple[str, ...]


def arousal_sentences(limit: int | None = None) -> ArousalSentences:
    """The bundled EmoBank sentences (the first ``limit`` of them; None: all 600)."""
    text = resources.files("amygdala").joinpath("data", SENTENCES_FILE).read_text(encoding="utf-8")
    rows = [line.split("\t", 3) for line in text.splitlines()[1:] if line.strip()][:limit]
    return ArousalSentences(CORPUS_NAME, tuple(r[0] for r in rows), tuple(float(r[2]) for r in rows),
                            tuple(float(r[1]) for r in rows), tuple(r[3] for r in rows))


def concept_arousal(concepts: Sequence[str]) -> dict[str, float]:
    """EmoBank-derived arousal of each covered concept (see the module docstring)."""
    text = resources.files("amygdala").joinpath("data", CONCEPT_FILE).read_text(encoding="utf-8")
    table = {fields[0]: float(fields[1]) for fields in (line.split("\t") for line in text.splitlines()[1:]) if
             len(fields) > 1}
    return {concept: table[concept] for concept in concepts if concept in table}


@dataclass(frozen=True)
class ArousalCheck:
    """Every figure of ``arousal_check`` (module docstring); ``pc_r`` maps ``pc1_valence``, ``pc1_arousal``,
    ``pc2_valence``, ``pc2_arousal`` to the mean |r| over the layers; ``explained`` the mean share of variance of
    PC1 and PC2; ``rho_replicates [n_boot]`` the rho of each seeded draw of the sentences."""

    corpus: str
    n_sentences: int
    rho: Interval
    valence_rho: float
    per_layer_rho: tuple[tuple[int, float], ...]
    pc_r: Mapping[str, float]
    explained: tuple[float, float]
    concept_arousal: tuple[tuple[str, float], ...]
    n_concepts: int
    seed: int = 0
    rho_replicates: torch.Tensor | None = None

    def to_json(self) -> dict[str, Any]:
        def clean(value: float) -> float | None:
            return None if math.isnan(value) else value

        return {"corpus": self.corpus, "n_sentences": self.n_sentences, "rho": clean(self.rho.estimate),
                "rho_ci": [clean(self.rho.low), clean(self.rho.high)], "valence_rho": clean(self.valence_rho),
                "per_layer_rho": {str(layer): clean(rho) for layer, rho in self.per_layer_rho},
                "pc_r": {name: clean(r) for name, r in self.pc_r.items()},
                "explained": [clean(share) for share in self.explained],
                "published": {"pc1_valence": PUBLISHED_PC1_VALENCE_R, "pc2_arousal": PUBLISHED_PC2_AROUSAL_R},
                "concept_arousal": dict(self.concept_arousal), "n_covered": len(self.concept_arousal),
                "n_concepts": self.n_concepts}


def _zscore(projection: torch.Tensor) -> torch.Tensor:
    return (projection - projection.mean()) / projection.std(correction=0)


def _axis_scores(vectors: Mapping[int, torch.Tensor], rows: list[int], weights: torch.Tensor,
                 layers: Sequence[int], pooled: torch.Tensor) -> tuple[np.ndarray, list[torch.Tensor]]:
    """The sentences' mean z on the weighted axis ``sum weights_i v_rows[i]`` and each layer's projection."""
    projections = [pooled[:, position].double() @ (weights @ vectors[layer][rows].double())
                   for position, layer in enumerate(layers)]
    return torch.stack([_zscore(p) for p in projections]).mean(dim=0).numpy(), projections


def _pc_figures(vectors: Mapping[int, torch.Tensor], concepts: Sequence[str], layers: Sequence[int],
                ratings: Mapping[str, Mapping[str, float]]) -> tuple[dict[str, float], tuple[float, float]]:
    """Mean over layers of |r| of PC1 / PC2 (of the concepts each rating covers) against each rating."""
    figures: dict[str, list[float]] = {f"pc{k + 1}_{name}": [] for k in range(2) for name in ratings}
    shares: list[torch.Tensor] = []
    for layer in layers:
        for name, rating in ratings.items():
            covered = [c for c in concepts if c in rating]
            if len(covered) < MIN_CONCEPTS:
                continue
            components = principal_components(vectors[layer][[concepts.index(c) for c in covered]], 2)
            values = np.asarray([rating[c] for c in covered])
            for k in range(2):
                figures[f"pc{k + 1}_{name}"].append(component_r(components, k, values))
        everything = principal_components(vectors[layer][[concepts.index(c) for c in concepts]], 2).explained
        shares.append(torch.nn.functional.pad(everything, (0, 2 - len(everything)), value=math.nan))
    means = {name: float(np.nanmean(values)) if values and not all(map(math.isnan, values)) else math.nan
             for name, values in figures.items()}
    share = torch.stack(shares).mean(dim=0)
    return means, (float(share[0]), float(share[1]))


def arousal_check(vectors: Mapping[int, torch.Tensor], concepts: Sequence[str], layers: Sequence[int],
                  pooled: torch.Tensor, corpus: ArousalSentences, *, n_boot: int = 1000, seed: int = 0) -> ArousalCheck:
    """The check of unit ``vectors {layer: [n_concepts, hidden]}`` (rows as ``concepts``) on ``corpus``, whose
    sentences' pooled activations are ``pooled [n_sentences, len(layers), hidden]`` (pooled as the vectors were
    trained). Concepts whose vector is NaN at some layer are left out."""
    fitted = [c for i, c in enumerate(concepts) if all(bool(vectors[layer][i].isfinite().all()) for layer in layers)]
    arousal = concept_arousal(fitted)
    problems = [] if len(arousal) >= MIN_CONCEPTS else [
        f"{len(arousal)} of the concepts {', '.join(concepts)} have an EmoBank arousal "
        f"(data/{CONCEPT_FILE}); the axis needs at least {MIN_CONCEPTS}"]
    if pooled.shape[:2] != (len(corpus.texts), len(layers)):
        problems.append(f"pooled activations {tuple(pooled.shape)} must be [{len(corpus.texts)} sentences, "
                        f"{len(layers)} layers, hidden]")
    if problems:
        raise ArousalError("arousal check: " + "; ".join(problems))
    covered = [c for c in fitted if c in arousal]
    values = torch.tensor([arousal[c] for c in covered], dtype=torch.float64)
    rows = [concepts.index(c) for c in covered]
    score, projections = _axis_scores(vectors, rows, values - values.mean(), layers, pooled)
    ratings = np.asarray(corpus.arousal)
    rho, replicates = rho_interval(score, ratings, n_boot, seed)
    valence = concept_valence(fitted)
    positive = [concepts.index(c) for c in fitted if valence.get(c, 0.0) >= NEUTRAL_BAND]
    negative = [concepts.index(c) for c in fitted if valence.get(c, 0.0) <= -NEUTRAL_BAND]
    valence_rho = math.nan
    if positive and negative:
        weights = torch.tensor([1 / len(positive)] * len(positive) + [-1 / len(negative)] * len(negative),
                               dtype=torch.float64)
        valence_score, _ = _axis_scores(vectors, positive + negative, weights, layers, pooled)
        valence_rho = spearman(valence_score, np.asarray(corpus.valence))
    pc_r, explained = _pc_figures(vectors, fitted, layers, {"valence": valence, "arousal": arousal})
    per_layer = tuple((layer, spearman(p.numpy(), ratings)) for layer, p in zip(layers, projections))
    return ArousalCheck(corpus.name, len(ratings), rho,
                        valence_rho, per_layer,
                        pc_r, explained, tuple((c, arousal[c]) for c in covered), len(concepts), seed, replicates)


def paired_arousal_rho(a: ArousalCheck, b: ArousalCheck) -> PairedDifference:
    """``a.rho`` minus ``b.rho`` with the CI over the same draws of the sentences (same corpus, ``n_boot`` and
    ``seed``)."""
    if (a.corpus, a.n_sentences, a.seed) != (b.corpus, b.n_sentences, b.seed) or a.rho_replicates is None \
            or b.rho_replicates is None:
        raise PairingError("paired arousal rho needs two checks on the same corpus with the same n_boot and seed")
    return paired_difference(a.rho.estimate, a.rho_replicates, b.rho.estimate, b.rho_replicates)


def check_arousal(loaded: LoadedModel, artifact: ReadoutArtifact, *, spec: PoolingSpec | None = None,
                  sentences: int | None = None, n_boot: int = 1000, seed: int = 0,
                  cache: ActivationCache | None = None) -> ArousalCheck:
    """``arousal_check`` of a trained ``artifact``: pools the bundled sentences (the first ``sentences``) at its
    layers as it was trained (``spec``: its record's pooling unless given) and checks its vectors."""
    from amygdala.forward.pooled import pool_texts
    from amygdala.forward.pooling import PoolingSpec

    spec = spec or (artifact.record.pooling if artifact.record is not None else PoolingSpec())
    corpus = arousal_sentences(sentences)
    pooled = pool_texts(loaded, corpus.texts, artifact.layers, spec, cache=cache)
    return arousal_check(artifact.vectors, artifact.concepts, artifact.layers, pooled, corpus, n_boot=n_boot,
                         seed=seed)
