"""The across-sources table and the concept space, on planted directions (no model needed)."""

from __future__ import annotations

import torch

from amygdala.evaluation.concept_space import PUBLISHED_R, concept_space
from amygdala.evaluation.sources import cross_source, text_sources
from amygdala.extraction.examples import Example
from amygdala.training.splits import labelled_texts

HIDDEN, LAYERS = 16, (0, 1)


def _examples(source: str, shared: bool) -> list[Example]:
    """40 texts per source: joy positives on every 3rd; a synthetic row's topic is one of 4."""
    rows = []
    for i in range(40):
        split = "heldout" if i % 5 == 0 else "train"
        topic = f"t{i % 4}" if source == "synthetic" else None
        rows.append(Example("joy", "positive" if i % 3 == 0 else "negative", f"{source} text {i}",
                            f"{source}/{i}", 9.0 if i % 3 == 0 else 0.0, split, source, topic))  # type: ignore[arg-type]
    return rows


def _pooled(examples: list[Example], split: str, directions: dict[str, torch.Tensor]) -> tuple[torch.Tensor, object]:
    data = labelled_texts(examples, ["joy"], split)  # type: ignore[arg-type]
    source = {e.text: e.source for e in examples}
    noise = torch.randn((len(data.texts), len(LAYERS), HIDDEN), generator=torch.Generator().manual_seed(len(split)))
    signal = torch.stack([directions[source[t]] * float(data.positive[r, 0]) * 4 for r, t in enumerate(data.texts)])
    return noise + signal[:, None, :], data


def _table(shared: bool) -> dict[tuple[str, str], float]:
    examples = _examples("graph", shared) + _examples("synthetic", shared)
    first = torch.nn.functional.normalize(torch.randn(HIDDEN, generator=torch.Generator().manual_seed(1)), dim=0)
    other = torch.randn(HIDDEN, generator=torch.Generator().manual_seed(2))
    other = torch.nn.functional.normalize(other - (other @ first) * first, dim=0)  # orthogonal to the first
    directions = {"graph": first, "synthetic": first if shared else other}
    train, heldout = _pooled(examples, "train", directions), _pooled(examples, "heldout", directions)
    table = cross_source(train, heldout, text_sources(examples), LAYERS, "diff_of_means")  # type: ignore[arg-type]
    assert table is not None and table.n_train == {"graph": 32, "synthetic": 32}
    return {(c.trained_on, c.scored_on): c.mean_auroc for c in table.cells}


def test_a_direction_shared_by_both_sources_reads_across_them() -> None:
    table = _table(shared=True)
    assert len(table) == 6 and min(table.values()) > 0.9


def test_a_direction_planted_in_one_source_only_does_not_transfer() -> None:
    table = _table(shared=False)
    assert table[("graph", "graph")] > 0.9 and table[("synthetic", "synthetic")] > 0.9
    assert table[("synthetic", "graph")] < 0.8 and table[("graph", "synthetic")] < 0.8


def test_cross_source_needs_train_texts_of_both_sources() -> None:
    examples = _examples("graph", True)
    directions = {"graph": torch.ones(HIDDEN) / 4}
    train, heldout = _pooled(examples, "train", directions), _pooled(examples, "heldout", directions)
    assert cross_source(train, heldout, text_sources(examples), LAYERS, "diff_of_means") is None  # type: ignore[arg-type]


def test_concept_space_pc1_follows_a_planted_valence_axis() -> None:
    concepts = ["happy", "joyful", "cheerful", "sad", "miserable", "angry", "calm", "proud"]
    valence = torch.tensor([2.7, 2.9, 2.4, -2.1, -2.6, -2.3, 1.2, 2.2])  # roughly VADER's
    axis = torch.nn.functional.normalize(torch.randn(HIDDEN, generator=torch.Generator().manual_seed(3)), dim=0)
    noise = 0.05 * torch.randn((len(concepts), HIDDEN), generator=torch.Generator().manual_seed(4))
    vectors = torch.nn.functional.normalize(valence[:, None] * axis + noise, dim=1)
    space = concept_space({0: vectors, 1: vectors}, concepts, LAYERS)
    assert space is not None and space.published == PUBLISHED_R
    best = space.best("valence")
    assert best.r["valence"][0] > 0.9 and len(best.pc1) == len(concepts)
    assert set(space.ratings["valence"]) == set(concepts)
