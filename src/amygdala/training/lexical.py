"""Vectors that do not fire on the word alone: hard negatives that name a concept, and the word's own direction.

A readout trained only on natural texts can learn the emotion's *name*: "The word 'amused' has six letters" then
lights up "amused" (``evaluation.lexical_control``). Two remedies, chosen by ``TrainOptions.lexical``
(``LEXICAL_RULES``):

- ``negatives``: **hard negatives**. ``data/lexical_negatives.jsonl`` holds templates with a ``{word}`` slot that
  name a word without expressing anything (file names, index entries, labels). Each template, filled with a
  concept's name (``_`` read as a space), becomes a negative example of that concept only (``hard_negatives``),
  so the direction must separate the feeling from the bare name. The templates are disjoint from the lexical
  control set (a test pins it), which stays a held-out measurement.
- ``project``: **the word's direction projected out**. The concept's name alone and in two short naming phrases
  (``NAMING_PHRASES``) are pooled; the word direction ``d_c`` is the mean of concept c's phrases minus the mean
  over every concept's phrases (what is specific to this name), per layer, and the fitted vector loses its
  component along it: ``v - (v.d)d / |d|^2``, renormalised (``project_word_directions``).
- ``both``: hard negatives, then the projection.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Literal

import torch

from amygdala.extraction.examples import Example
from amygdala.training.splits import LabelledTexts

if TYPE_CHECKING:
    from amygdala.forward.activation_cache import ActivationCache
    from amygdala.forward.distributed import World
    from amygdala.forward.models import LoadedModel
    from amygdala.forward.pooling import PoolingSpec

LexicalRule = Literal["none", "negatives", "project", "both"]
LEXICAL_RULES: dict[str, str] = {
    "none": "no lexical remedy",
    "negatives": "add template texts that name the concept (data/lexical_negatives.jsonl) to its negatives",
    "project": "project each vector off the direction of its concept's bare name",
    "both": "hard negatives, then the projection",
}
NEGATIVES_FILE = "lexical_negatives.jsonl"
SLOT = "{word}"
NAMING_PHRASES = ("{word}", "{word}.", "the word {word}")
HARD_NEGATIVE_KEY = "lexical-negative"


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


def hard_negatives(concepts: Sequence[str]) -> list[Example]:
    """The hard negatives of ``concepts`` as train examples, each a negative of its own concept only; one node
    key per concept (``lexical-negative:<concept>``), so folds never split a concept's templates."""
    return [Example(concept, "negative", text, f"{HARD_NEGATIVE_KEY}:{concept}", 0.0, "train")
            for concept in concepts for text in hard_negative_texts(concept)]


def hard_negative_data(concepts: Sequence[str]) -> LabelledTexts:
    """``hard_negatives(concepts)`` as labelled texts over ``concepts`` (rows: concept by concept)."""
    texts = [(c, text) for c, concept in enumerate(concepts) for text in hard_negative_texts(concept)]
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


def word_projection(loaded: LoadedModel, vectors: Mapping[int, torch.Tensor], concepts: Sequence[str],
                    layers: Sequence[int], spec: PoolingSpec, cache: ActivationCache | None,
                    world: World) -> dict[int, torch.Tensor]:
    """``project_word_directions`` of ``vectors`` with the word directions of ``concepts``' naming phrases,
    pooled by ``spec`` at ``layers`` (a few short texts: one small forward)."""
    from amygdala.forward.pooled import pool_texts

    pooled = pool_texts(loaded, naming_texts(concepts), list(layers), spec, cache=cache, world=world)
    directions = word_directions(pooled.to(next(iter(vectors.values())).device), len(concepts))
    return project_word_directions(vectors, directions, layers)


Fit = Callable[[torch.Tensor, LabelledTexts], dict[int, torch.Tensor]]


def lexical_fit(fit: Fit, rule: str, negatives: torch.Tensor, negative_data: LabelledTexts, words: torch.Tensor,
                layers: Sequence[int]) -> Fit:
    """``fit(pooled, data)`` with the lexical ``rule``, for refits (cross-validation folds): the hard negatives'
    pooled rows ``negatives [n, len(layers), H]`` (``hard_negative_data``) join the fitting rows, and/or the
    vectors lose their word directions ``words [C, len(layers), H]`` (``word_directions``)."""
    def wrapped(pooled: torch.Tensor, data: LabelledTexts) -> dict[int, torch.Tensor]:
        if uses_negatives(rule):
            pooled, data = torch.cat([pooled, negatives.to(pooled.dtype)]), joined(data, negative_data)
        vectors = fit(pooled, data)
        return project_word_directions(vectors, words, layers) if uses_projection(rule) else vectors

    return wrapped
