"""Labelled splits of the examples: unique texts with per-concept labels, seeded splits by node key, and
directions fitted on a subset of texts (for stability halves and layer selection's validation part).

A node's texts never straddle two parts of a split: parts are drawn by node key, so near-duplicate wording of one
memory cannot leak from the fitting part into the measuring part.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from amygdala.directions import DIRECTION_METHODS, ConceptStats, DirectionMethod, mean_centered
from amygdala.examples import Example, Split


@dataclass(frozen=True)
class LabelledTexts:
    """Unique texts with their node keys and indicator matrices ``[n_texts, n_concepts]`` (bool)."""

    texts: tuple[str, ...]
    keys: tuple[str, ...]
    positive: torch.Tensor
    negative: torch.Tensor

    def subset(self, rows: Sequence[int]) -> LabelledTexts:
        rows = list(rows)
        return LabelledTexts(tuple(self.texts[r] for r in rows), tuple(self.keys[r] for r in rows),
                             self.positive[rows], self.negative[rows])


def labelled_texts(examples: Sequence[Example], concepts: Sequence[str], split: Split | None) -> LabelledTexts:
    """The unique texts of ``split`` (None: both) and which of ``concepts`` each is a positive / negative for."""
    slot = {concept: index for index, concept in enumerate(concepts)}
    rows: dict[str, tuple[str, set[int], set[int]]] = {}
    for example in examples:
        if example.emotion in slot and (split is None or example.split == split):
            _, positive, negative = rows.setdefault(example.text, (example.key, set(), set()))
            (positive if example.polarity == "positive" else negative).add(slot[example.emotion])
    texts = tuple(rows)
    positive = torch.zeros((len(texts), len(concepts)), dtype=torch.bool)
    negative = torch.zeros_like(positive)
    for row, text in enumerate(texts):
        positive[row, list(rows[text][1])] = True
        negative[row, list(rows[text][2])] = True
    return LabelledTexts(texts, tuple(rows[text][0] for text in texts), positive, negative)


def key_folds(keys: Sequence[str], n_folds: int, seed: int) -> list[list[int]]:
    """Row indices per fold: the distinct keys, shuffled with ``seed``, are dealt round-robin into ``n_folds``."""
    distinct = sorted(set(keys))
    random.Random(seed).shuffle(distinct)
    fold_of = {key: index % n_folds for index, key in enumerate(distinct)}
    return [[row for row, key in enumerate(keys) if fold_of[key] == fold] for fold in range(n_folds)]


def fit_directions(pooled: torch.Tensor, data: LabelledTexts, concepts: Sequence[str], layers: Sequence[int],
                   method: str | DirectionMethod) -> dict[int, torch.Tensor]:
    """Unit vectors ``{layer: [C, H]}`` from ``pooled [n, L, H]`` by ``method`` (a ``DIRECTION_METHODS`` name or a
    function of that signature); NaN rows for concepts lacking positives or negatives (the other concepts are
    fitted without them). One layer at a time, so memory stays ``H x H``."""
    rule = DIRECTION_METHODS[method] if isinstance(method, str) else method
    usable = (data.positive.sum(dim=0) > 0) & (data.negative.sum(dim=0) > 0)
    keep = usable.nonzero().flatten().tolist()
    vectors = {}
    for position, layer in enumerate(layers):
        out = torch.full((len(concepts), pooled.shape[-1]), math.nan)
        if keep and (rule is not mean_centered or len(keep) > 1):
            stats = ConceptStats.from_pooled(pooled[:, [position]], data.positive[:, keep], data.negative[:, keep],
                                             [concepts[c] for c in keep], [layer])
            out[keep] = rule(stats, layer).float()
        vectors[layer] = out
    return vectors
