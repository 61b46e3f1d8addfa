"""Vectors that do not fire on the word alone: hard negatives that name a concept, and the word's own direction.

A readout trained only on natural texts can learn the emotion's *name*: "The word 'amused' has six letters" then
lights up "amused" (``evaluation.lexical_control``). Two remedies, chosen by ``TrainOptions.lexical``
(``LEXICAL_RULES``):

- ``negatives``: **hard negatives**. ``data/lexical_negatives.jsonl`` holds 16 templates with a ``{word}`` slot
  that name a word without expressing anything (file names, index entries, labels), filled with every concept's
  name (``_`` read as a space; ``hard_negative_data``). Their pooled mean is mixed into each concept's negative
  mean at ``NEGATIVE_WEIGHT`` (``mix_negatives``: ``(1 - w) mean(negatives) + w mean(hard negatives)``), the
  covariance staying the natural texts', so a direction must score text that only names emotions below the
  concept's negatives. Added as plain negative examples (of their own concept) they changed no false-positive
  rate beyond noise and cost AUROC: the direction learned the templates' style (README, section 3). The
  templates are disjoint from the lexical control set (a test pins it), which stays a held-out measurement.
- ``project``: **the word's direction projected out**. The concept's name alone and in two short naming phrases
  (``NAMING_PHRASES``) are pooled; the word direction ``d_c`` is the mean of concept c's phrases minus the mean
  over every concept's phrases (what is specific to this name), per layer, and the fitted vector loses its
  component along it: ``v - (v.d)d / |d|^2``, renormalised (``project_word_directions``).
- ``both``: hard negatives, then the projection.

The default is ``negatives`` (``DEFAULT_LEXICAL``). With neutral-PC removal, training mixes before removing; a
cross-validation refit (``lexical_fit``) mixes the unprojected hard mean into the projected statistics, a close
approximation.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Literal

import torch

from amygdala.training.directions import DIRECTION_METHODS, DirectionMethod, fit_directions
from amygdala.training.splits import LabelledTexts
from amygdala.training.statistics import ConceptStats

if TYPE_CHECKING:
    from amygdala.forward.activation_cache import ActivationCache
    from amygdala.forward.distributed import World
    from amygdala.forward.models import LoadedModel
    from amygdala.forward.pooling import PoolingSpec

LexicalRule = Literal["none", "negatives", "project", "both"]
LEXICAL_RULES: dict[str, str] = {
    "none": "no lexical remedy",
    "negatives": "mix the mean of template texts naming the concepts (data/lexical_negatives.jsonl) into the negatives",
    "project": "project each vector off the direction of its concept's bare name",
    "both": "hard negatives, then the projection",
}
NEGATIVES_FILE = "lexical_negatives.jsonl"
SLOT = "{word}"
NAMING_PHRASES = ("{word}", "{word}.", "the word {word}")
HARD_NEGATIVE_KEY = "lexical-negative"
NEGATIVE_WEIGHT = 0.1
MAX_HARD_NEGATIVES = 320
"""At most this many hard negatives in all: with more than 20 concepts each gets fewer templates (rotating)."""
DEFAULT_LEXICAL: LexicalRule = "negatives"
"""Chosen by the study (README, section 3): false-positive rate 0.456 -> 0.011, no other figure worse beyond
noise."""


def uses_negatives(rule: str) -> bool:
    return rule in ("negatives", "both")


def uses_projection(rule: str) -> bool:
    return rule in ("project", "both")


@cache
def negative_templates() -> tuple[str, ...]:
    """The bundled hard-negative templates, in file order (each has exactly one ``{word}`` slot)."""
    text = resources.files("amygdala").joinpath("data", NEGATIVES_FILE).read_text(encoding="utf-8")
    return tuple(json.loads(line)["template"] for line in text.splitlines() if line.strip())


def concept_word(concept: str) -> str:
    """How a concept's name is written in a text: ``at_ease`` -> ``at ease``."""
    return concept.replace("_", " ")


def hard_negative_texts(concept: str) -> tuple[str, ...]:
    """Every template filled with ``concept``'s name."""
    return tuple(template.replace(SLOT, concept_word(concept)) for template in negative_templates())


def hard_negative_data(concepts: Sequence[str]) -> LabelledTexts:
    """The templates filled with each of ``concepts`` as labelled texts, each a negative of its own concept only
    (rows: concept by concept; one node key per concept, ``lexical-negative:<concept>``): every template, or with
    over 20 concepts ``MAX_HARD_NEGATIVES // n`` of them per concept, rotating through the file."""
    templates = negative_templates()
    per_concept = max(1, min(len(templates), MAX_HARD_NEGATIVES // max(1, len(concepts))))
    texts = [(c, templates[(c * per_concept + t) % len(templates)].replace(SLOT, concept_word(concept)))
             for c, concept in enumerate(concepts) for t in range(per_concept)]
    negative = torch.zeros((len(texts), len(concepts)), dtype=torch.bool)
    for row, (c, _) in enumerate(texts):
        negative[row, c] = True
    return LabelledTexts(tuple(concepts), tuple(text for _, text in texts),
                         tuple(f"{HARD_NEGATIVE_KEY}:{concepts[c]}" for c, _ in texts),
                         torch.zeros_like(negative), negative)


def joined(a: LabelledTexts, b: LabelledTexts) -> LabelledTexts:
    """The rows of ``a`` then ``b`` (same concepts)."""
    assert a.concepts == b.concepts, "joined labelled texts must share their concepts"
    return LabelledTexts(a.concepts, a.texts + b.texts, a.keys + b.keys, torch.cat([a.positive, b.positive]),
                         torch.cat([a.negative, b.negative]))


def naming_texts(concepts: Sequence[str]) -> tuple[str, ...]:
    """Each concept's naming phrases, concept by concept (``len(NAMING_PHRASES)`` each)."""
    return tuple(phrase.replace(SLOT, concept_word(concept)) for concept in concepts for phrase in NAMING_PHRASES)


def word_directions(pooled: torch.Tensor, n_concepts: int) -> torch.Tensor:
    """``[n_concepts, L, H]`` word directions from the pooled ``naming_texts`` ``[n_concepts * phrases, L, H]``:
    each concept's mean minus the mean over all concepts."""
    means = pooled.double().reshape(n_concepts, len(NAMING_PHRASES), *pooled.shape[1:]).mean(dim=1)
    return means - means.mean(dim=0, keepdim=True)


def project_word_directions(vectors: Mapping[int, torch.Tensor], directions: torch.Tensor,
                            layers: Sequence[int]) -> dict[int, torch.Tensor]:
    """Each unit vector ``{layer: [C, H]}`` without its component along its concept's word direction
    (``directions [C, len(layers), H]``), renormalised; NaN rows stay NaN."""
    out = {}
    for position, layer in enumerate(layers):
        vector, word = vectors[layer].double(), directions[:, position].to(vectors[layer].device)
        along = (vector * word).sum(dim=1, keepdim=True) / word.square().sum(dim=1, keepdim=True).clamp_min(1e-30)
        projected = vector - along * word
        out[layer] = (projected / projected.norm(dim=1, keepdim=True)).to(vectors[layer].dtype)
    return out


def hard_negative_stats(loaded: LoadedModel, stats: ConceptStats, spec: PoolingSpec, cache: ActivationCache | None,
                        world: World, *, batch_size: int | None = None, batch_tokens: int | None = None
                        ) -> ConceptStats:
    """Training's statistics with the hard negatives' mean mixed in (``mix_negatives``), the hard negatives of
    the stats' concepts pooled by ``spec`` at its layers (at most ``MAX_HARD_NEGATIVES`` short texts)."""
    from amygdala.forward.pooled import pool_texts

    layers, device = list(stats.layers), stats.total_sum.device
    hard = pool_texts(loaded, hard_negative_data(stats.concepts).texts, layers, spec, cache=cache, world=world,
                      batch_size=batch_size, batch_tokens=batch_tokens)  # batched as training's own texts
    return mix_negatives(stats, {layer: hard[:, i].double().mean(dim=0).to(device) for i, layer in enumerate(layers)})


def word_projection(loaded: LoadedModel, vectors: dict[int, torch.Tensor], concepts: Sequence[str],
                    spec: PoolingSpec, cache: ActivationCache | None, world: World, *, batch_size: int | None = None,
                    batch_tokens: int | None = None) -> dict[int, torch.Tensor]:
    """``project_word_directions`` of training's ``vectors`` with the naming phrases pooled by ``spec``."""
    from amygdala.forward.pooled import pool_texts

    layers = list(vectors)
    pooled = pool_texts(loaded, naming_texts(concepts), layers, spec, cache=cache, world=world,
                        batch_size=batch_size, batch_tokens=batch_tokens)
    device = next(iter(vectors.values())).device
    return project_word_directions(vectors, word_directions(pooled.to(device), len(concepts)), layers)


Fit = Callable[[torch.Tensor, LabelledTexts], dict[int, torch.Tensor]]


def mix_negatives(stats: ConceptStats, hard_mean: Mapping[int, torch.Tensor],
                  weight: float = NEGATIVE_WEIGHT) -> ConceptStats:
    """``stats`` with each concept's negative mean replaced by ``(1 - weight)`` x itself + ``weight`` x the hard
    negatives' mean ``hard_mean {layer: [H]}`` (counts, totals and second moments, hence the covariance, kept)."""
    counts = stats.negative_count.to(stats.negative_sum.dtype)[None, :, None]
    target = torch.stack([hard_mean[layer].to(stats.negative_sum) for layer in stats.layers])[:, None, :]
    mixed = (1 - weight) * stats.negative_sum + weight * target * counts
    return replace(stats, negative_sum=mixed)


def mixed_method(method: str | DirectionMethod, hard_mean: Mapping[int, torch.Tensor],
                 weight: float = NEGATIVE_WEIGHT) -> DirectionMethod:
    """``method`` fitted on ``mix_negatives`` of its statistics."""
    rule = DIRECTION_METHODS[method] if isinstance(method, str) else method

    def mixed(stats: ConceptStats, layer: int) -> torch.Tensor:
        return rule(mix_negatives(stats, hard_mean, weight), layer)

    return mixed


def lexical_fit(method: str | DirectionMethod, rule: str, hard_pooled: torch.Tensor, words: torch.Tensor,
                layers: Sequence[int], device: torch.device | str = "cpu", neutral_pcs: int = 0) -> Fit:
    """A refit (cross-validation folds) of ``method`` with the lexical ``rule``: the hard negatives' pooled rows
    ``hard_pooled [n, len(layers), H]`` (``hard_negative_data``) give the mean mixed into the negatives, and/or the
    vectors lose their word directions ``words [C, len(layers), H]`` (``word_directions``); ``rule`` none: the
    method alone."""
    layers = list(layers)
    hard_mean = {layer: hard_pooled[:, i].double().mean(dim=0) for i, layer in enumerate(layers)}
    chosen = mixed_method(method, hard_mean) if uses_negatives(rule) else method

    def fit(pooled: torch.Tensor, data: LabelledTexts) -> dict[int, torch.Tensor]:
        vectors = fit_directions(pooled, data, layers, chosen, device, neutral_pcs=neutral_pcs)
        return project_word_directions(vectors, words, layers) if uses_projection(rule) else vectors

    return fit
