"""Labelled texts: the examples as unique texts with per-concept label matrices, and seeded folds by node key.

One type serves every stage that needs labels: training (the ``train`` split, streamed through the label
matrices), evaluation (``heldout`` and ``train``) and layer selection (folds of ``train``).

A node's texts never straddle two parts of a split: parts are drawn by node key, so near-duplicate wording of one
memory cannot leak from the fitting part into the measuring part. A synthetic row's key here is its topic
(``Example.group``), so folds hold out whole topics.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from amygdala.extraction.examples import Example, Split


@dataclass(frozen=True)
class LabelledTexts:
    """Unique texts with their node keys (a synthetic row's: its topic, ``Example.group``) and indicator matrices
    ``[n_texts, n_concepts]`` (bool): row ``i`` of
    ``positive`` / ``negative`` marks the concepts text ``i`` is a positive / a negative example of."""

    concepts: tuple[str, ...]
    texts: tuple[str, ...]
    keys: tuple[str, ...]
    positive: torch.Tensor
    negative: torch.Tensor

    def subset(self, rows: Sequence[int]) -> LabelledTexts:
        rows = list(rows)
        return LabelledTexts(self.concepts, tuple(self.texts[r] for r in rows), tuple(self.keys[r] for r in rows),
                             self.positive[rows], self.negative[rows])

    def counts(self) -> dict[str, dict[str, int]]:
        """Unique texts per concept and polarity."""
        positive, negative = self.positive.sum(dim=0).tolist(), self.negative.sum(dim=0).tolist()
        return {concept: {"positive": int(p), "negative": int(n)}
                for concept, p, n in zip(self.concepts, positive, negative)}

    def clashes(self) -> list[str]:
        """Concepts some text is both a positive and a negative example of (sorted)."""
        both = (self.positive & self.negative).any(dim=0).tolist()
        return sorted(concept for concept, clash in zip(self.concepts, both) if clash)


def labelled_texts(examples: Sequence[Example], concepts: Sequence[str], split: Split | None) -> LabelledTexts:
    """The unique texts of ``split`` (None: both), in first-seen order, and which of ``concepts`` each is a
    positive / negative for (examples of other concepts are left out)."""
    slot = {concept: index for index, concept in enumerate(concepts)}
    rows: dict[str, tuple[str, set[int], set[int]]] = {}
    for example in examples:
        if example.emotion in slot and (split is None or example.split == split):
            _, positives, negatives = rows.setdefault(example.text, (example.group, set(), set()))
            (positives if example.polarity == "positive" else negatives).add(slot[example.emotion])
    texts = tuple(rows)
    positive = torch.zeros((len(texts), len(concepts)), dtype=torch.bool)
    negative = torch.zeros_like(positive)
    for row, text in enumerate(texts):
        positive[row, list(rows[text][1])] = True
        negative[row, list(rows[text][2])] = True
    return LabelledTexts(tuple(concepts), texts, tuple(rows[text][0] for text in texts), positive, negative)


def key_folds(keys: Sequence[str], n_folds: int, seed: int) -> list[list[int]]:
    """Row indices per fold: the distinct keys, shuffled with ``seed``, are dealt round-robin into ``n_folds``."""
    distinct = sorted(set(keys))
    random.Random(seed).shuffle(distinct)
    fold_of = {key: index % n_folds for index, key in enumerate(distinct)}
    return [[row for row, key in enumerate(keys) if fold_of[key] == fold] for fold in range(n_folds)]
