"""Labelled texts and node-key folds: one text per row whatever the number of concepts, labels per concept, folds
that never split a node, the same folds for the same seed."""

from __future__ import annotations

import torch

from amygdala.extraction.examples import Example
from amygdala.training.splits import LabelledTexts, key_folds, labelled_texts


def _example(emotion: str, polarity: str, text: str, key: str, split: str = "train") -> Example:
    return Example(emotion, polarity, text, key, 9.0 if polarity == "positive" else 0.0, split)  # type: ignore[arg-type]


EXAMPLES = [
    _example("joy", "positive", "We danced.", "n1"),
    _example("fear", "negative", "We danced.", "n1"),
    _example("fear", "positive", "A shadow moved.", "n2"),
    _example("joy", "negative", "A shadow moved.", "n2"),
    _example("joy", "negative", "The bus was late.", "n3"),
    _example("calm", "positive", "The lake was still.", "n4"),
    _example("joy", "positive", "Hooray!", "n5", "heldout"),
]


def test_labelled_texts_keeps_one_row_per_text_with_every_concept_label() -> None:
    data = labelled_texts(EXAMPLES, ("fear", "joy"), "train")
    assert data.concepts == ("fear", "joy")
    assert data.texts == ("We danced.", "A shadow moved.", "The bus was late.")
    assert data.keys == ("n1", "n2", "n3")
    assert data.positive.tolist() == [[False, True], [True, False], [False, False]]
    assert data.negative.tolist() == [[True, False], [False, True], [False, True]]
    assert data.counts() == {"fear": {"positive": 1, "negative": 1}, "joy": {"positive": 1, "negative": 2}}
    assert labelled_texts(EXAMPLES, ("joy",), "heldout").texts == ("Hooray!",)
    assert len(labelled_texts(EXAMPLES, ("calm", "fear", "joy"), None).texts) == 5


def test_labelled_texts_names_the_concepts_a_text_contradicts() -> None:
    clash = EXAMPLES + [_example("joy", "negative", "We danced.", "n1")]
    assert labelled_texts(clash, ("fear", "joy"), "train").clashes() == ["joy"]
    assert labelled_texts(EXAMPLES, ("fear", "joy"), "train").clashes() == []


def test_subset_keeps_rows_and_their_labels_together() -> None:
    data = labelled_texts(EXAMPLES, ("fear", "joy"), "train")
    part = data.subset([2, 0])
    assert isinstance(part, LabelledTexts) and part.texts == ("The bus was late.", "We danced.")
    assert torch.equal(part.positive, data.positive[[2, 0]]) and part.keys == ("n3", "n1")


def test_key_folds_cover_every_row_once_never_split_a_node_and_repeat_with_the_seed() -> None:
    keys = [f"node{i // 3}" for i in range(30)]  # ten nodes, three texts each
    folds = key_folds(keys, 4, seed=7)
    assert sorted(row for fold in folds for row in fold) == list(range(30))
    assert all({keys[row] for row in fold}.isdisjoint({keys[row] for row in other})
               for i, fold in enumerate(folds) for other in folds[i + 1:])
    assert [len({keys[row] for row in fold}) for fold in folds] == [3, 3, 2, 2]
    assert key_folds(keys, 4, seed=7) == folds and key_folds(keys, 4, seed=8) != folds


def test_key_folds_keep_a_node_in_one_fold_and_depend_on_the_seed() -> None:
    keys = [f"n{i // 3}" for i in range(60)]
    folds = key_folds(keys, 4, seed=0)
    assert sorted(row for fold in folds for row in fold) == list(range(60))
    fold_of_key = [{keys[row] for row in fold} for fold in folds]
    assert all(a.isdisjoint(b) for i, a in enumerate(fold_of_key) for b in fold_of_key[i + 1:])
    assert folds == key_folds(keys, 4, seed=0) != key_folds(keys, 4, seed=1)


def test_folds_of_synthetic_rows_hold_out_whole_topics() -> None:
    rows = [Example("joy", "positive" if i % 2 else "negative", f"story {i}", f"story/{i}", 10.0, "train",
                    "synthetic", f"topic{i % 5}") for i in range(40)]
    data = labelled_texts(rows, ["joy"], "train")
    parts = key_folds(data.keys, 5, seed=0)
    topics = [{rows[r].topic for r in part} for part in parts]
    assert all(len(t) == 1 for t in topics) and len(set().union(*topics)) == 5
