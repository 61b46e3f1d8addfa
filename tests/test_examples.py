"""Selection rules: positives, negatives, skips, duplicates, the held-out split and the cap."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from amygdala.extraction.emotions import count_mentions
from amygdala.extraction.examples import Example, ExamplesError, read_examples_file
from amygdala.extraction.scoring import ExtractOptions, heldout_split, score_graph, tag_frequencies
from amygdala.extraction.sources import MemoryNode
from amygdala.extraction.sources.graph_file import read_graph_file
from amygdala.extraction.stage import cap_sizes, select_examples
from amygdala.extraction.tags import format_content, is_tag_line

LOOSE = ExtractOptions(min_positives=1, min_content_chars=10, heldout_fraction=0.0)
SKIP_UNTAGGED = ExtractOptions(**{**vars(LOOSE), "untagged": "skip"})


def node(key: str, body: str, **scores: float) -> MemoryNode:
    return MemoryNode(key, "journal", "2026-01-01T00:00:00Z", format_content(body, scores))


def text(index: int) -> str:
    return f"Entry {index}: rebuilt the search index and walked the long way home past the canal."


def polar(examples: tuple[Example, ...], polarity: str) -> dict[str, float]:
    return {example.key: example.score for example in examples if example.polarity == polarity}


def test_positive_needs_the_min_positive_score_and_negative_the_max_negative_score() -> None:
    nodes = [node("a", text(1), calm=9), node("b", text(2), calm=8), node("c", text(3), calm=7),
             node("d", text(4), calm=0), node("e", text(5), calm=0.5), node("f", text(6), warmth=9)]
    selection = select_examples(nodes, LOOSE)
    examples = selection.examples["calm"]
    assert polar(examples, "positive") == {"a": 9.0, "b": 8.0}
    assert polar(examples, "negative") == {"d": 0.0, "f": 0.0}  # f: calm absent counts as 0
    looser = select_examples(nodes, ExtractOptions(min_positives=1, min_content_chars=10, max_negative_score=0.5))
    assert set(polar(looser.examples["calm"], "negative")) == {"d", "e", "f"}


def test_negatives_exclude_texts_that_name_the_emotion() -> None:
    nodes = [node("a", text(1), anxious=9), node("b", "The deploy went out; a little anxiety about the migration.",
                                                 warmth=3),
             node("c", "Anxiously refreshed the dashboard, then anxiety again at noon.", warmth=2),
             node("d", text(4), warmth=1)]
    strict = select_examples(nodes, LOOSE).examples["anxious"]
    assert set(polar(strict, "negative")) == {"d"}
    assert select_examples(nodes, LOOSE).candidates["anxious"].negative_naming_emotion == 2
    lenient = select_examples(nodes, ExtractOptions(min_positives=1, min_content_chars=10,
                                                    max_negative_mentions=1)).examples["anxious"]
    assert set(polar(lenient, "negative")) == {"b", "d"}


def test_an_unreadable_tag_makes_the_node_neither_positive_nor_negative() -> None:
    """Regression: `joy:11` used to leave joy absent, so the node counted as a joy negative (score 0)."""
    nodes = [node("a", text(1), joy=9), node("b", text(2) + "\njoy:11 calm:4"), node("c", text(3), calm=2)]
    selection = select_examples(nodes, LOOSE)
    assert set(polar(selection.examples["joy"], "negative")) == {"c"}
    assert [(t.key, t.token) for t in selection.graph.skipped_tags] == [("b", "joy:11")]
    assert "b" in {n.key for n in selection.graph.nodes}


def test_tag_lines_never_reach_the_example_text() -> None:
    nodes = [node("a", text(1), joy=9, calm=1), node("b", text(2), calm=3)]
    for examples in select_examples(nodes, LOOSE).examples.values():
        assert all(not is_tag_line(example.text.splitlines()[-1]) for example in examples)
        assert {example.text for example in examples} <= {text(1), text(2)}


def test_nodes_without_valid_tags_or_text_are_skipped_with_their_reason() -> None:
    """With ``untagged="skip"`` (the behaviour before issue 10) an untagged node is skipped too."""
    nodes = [node("a", text(1), joy=9), node("b", text(2), calm=1), MemoryNode("c", "note", "", text(3)),
             MemoryNode("d", "note", "", text(4) + "\njoy:11"), node("e", "too short", joy=9)]
    graph = score_graph(nodes, SKIP_UNTAGGED)
    reasons = {skipped.key: skipped.reason for skipped in graph.skipped_nodes}
    assert reasons["c"] == "no tag line"
    assert reasons["d"] == "no valid tag in its tag lines"
    assert "9 characters" in reasons["e"] and "min_content_chars=10" in reasons["e"]
    assert [n.key for n in graph.nodes] == ["a", "b"]
    by_default = score_graph(nodes, LOOSE)
    assert [(n.key, n.tagged) for n in by_default.nodes] == [("a", True), ("b", True), ("c", False)]
    assert {s.key for s in by_default.skipped_nodes} == {"d", "e"}


def test_untagged_nodes_are_negatives_with_score_0_for_every_emotion() -> None:
    nodes = [node("a", text(1), joy=9, calm=9), node("b", text(2), joy=0, calm=0),
             MemoryNode("c", "note", "", text(3)), MemoryNode("d", "note", "", "Short."),
             MemoryNode("e", "note", "", "A quiet, calm walk home past the canal in the evening."),
             MemoryNode("f", "note", "", text(3).replace(" ", "  "))]  # c's text, other whitespace
    selection = select_examples(nodes, LOOSE)
    assert selection.emotions == ("calm", "joy")
    assert polar(selection.examples["joy"], "negative") == {"b": 0.0, "c": 0.0, "e": 0.0}
    assert polar(selection.examples["calm"], "negative") == {"b": 0.0, "c": 0.0}  # e names calm: not a negative
    assert selection.graph.n_untagged == 2 and selection.untagged_used() == 2
    skipped = {s.key: s.reason for s in selection.graph.skipped_nodes}
    assert skipped["f"] == "same text as node c" and "min_content_chars=10" in skipped["d"]
    skip = select_examples(nodes, SKIP_UNTAGGED)
    assert set(polar(skip.examples["joy"], "negative")) == set(polar(skip.examples["calm"], "negative")) == {"b"}
    assert skip.graph.n_untagged == skip.untagged_used() == 0


def test_untagged_nodes_fill_negatives_under_the_cap_like_any_other() -> None:
    nodes = [node(f"p{i:02}", text(i), joy=9) for i in range(10)]
    nodes += [MemoryNode(f"u{i:02}", "note", "", text(100 + i)) for i in range(30)]
    options = ExtractOptions(min_positives=1, min_content_chars=10, max_examples_per_emotion=16)
    examples = select_examples(nodes, options).examples["joy"]
    assert (len(polar(examples, "positive")), len(polar(examples, "negative"))) == (8, 8)
    assert set(polar(examples, "negative").values()) == {0.0}
    assert select_examples(list(reversed(nodes)), options).examples["joy"] == examples


def test_a_graph_of_untagged_nodes_only_is_an_error() -> None:
    nodes = [MemoryNode(f"u{i}", "note", "", text(i)) for i in range(3)]
    with pytest.raises(ExamplesError, match=r"none of the 3 nodes of g is usable with its tags \(3 x usable but "
                                            r"untagged\)"):
        select_examples(nodes, LOOSE, "g")


def test_duplicate_texts_after_whitespace_normalisation_count_once() -> None:
    nodes = [node("b", "Walked  the long way home\npast the canal tonight.", joy=9),
             node("a", "Walked the long way home past the canal tonight.  ", joy=8),
             node("c", text(3), calm=1)]
    graph = score_graph(nodes, LOOSE)
    assert [n.key for n in graph.nodes] == ["a", "c"]
    assert [(s.key, s.reason) for s in graph.skipped_nodes] == [("b", "same text as node a")]


def test_duplicate_keys_keep_one_node_whatever_the_order() -> None:
    nodes = [node("a", text(1), joy=9), node("a", text(2), joy=1), node("b", text(3), calm=1)]
    assert score_graph(nodes, LOOSE) == score_graph(list(reversed(nodes)), LOOSE)
    assert [s.key for s in score_graph(nodes, LOOSE).skipped_nodes] == ["a"]


def test_heldout_split_is_by_node_and_independent_of_the_chosen_emotions() -> None:
    nodes = [node(f"k{i:03}", text(i), joy=9 * (i % 2), calm=9 * (i % 3 == 0)) for i in range(120)]
    options = ExtractOptions(min_positives=1, min_content_chars=10, heldout_fraction=0.3, seed=4)
    both = select_examples(nodes, options)
    splits: dict[str, str] = {}
    for examples in both.examples.values():
        for example in examples:
            assert splits.setdefault(example.key, example.split) == example.split
    only_joy = select_examples(nodes, ExtractOptions(**{**vars(options), "emotions": ("joy",)}))
    assert all(splits[example.key] == example.split for example in only_joy.examples["joy"])
    assert 0.15 < sum(split == "heldout" for split in splits.values()) / len(splits) < 0.45


def test_heldout_split_is_stable_for_a_seed_and_follows_the_fraction() -> None:
    keys = [f"node-{i}" for i in range(4000)]
    splits = [heldout_split(key, 0, 0.2) for key in keys]
    assert splits == [heldout_split(key, 0, 0.2) for key in keys]
    assert 0.18 < splits.count("heldout") / len(keys) < 0.22
    assert splits != [heldout_split(key, 1, 0.2) for key in keys]
    assert {heldout_split(key, 0, 0.0) for key in keys} == {"train"}


def test_selection_does_not_depend_on_node_order() -> None:
    nodes = [node(f"k{i:03}", text(i), joy=(i * 7) % 11, calm=(i * 3) % 11) for i in range(80)]
    shuffled = nodes[:]
    random.Random(1).shuffle(shuffled)
    options = ExtractOptions(min_positives=1, min_content_chars=10, max_examples_per_emotion=20)
    assert select_examples(nodes, options).examples == select_examples(shuffled, options).examples


@pytest.mark.parametrize(("positives", "negatives", "cap", "expected"), [
    (30, 900, 500, (30, 470)), (600, 600, 500, (250, 250)), (600, 100, 500, (400, 100)),
    (10, 20, 500, (10, 20)), (3, 3, 2, (1, 1)),
])
def test_cap_sizes_split_the_cap_between_polarities(positives: int, negatives: int, cap: int,
                                                   expected: tuple[int, int]) -> None:
    assert cap_sizes(positives, negatives, cap) == expected


def test_capped_sampling_is_deterministic_and_seeded() -> None:
    nodes = [node(f"k{i:03}", text(i), joy=9 if i < 40 else 0) for i in range(200)]
    options = ExtractOptions(min_positives=1, min_content_chars=10, max_examples_per_emotion=30)
    first = select_examples(nodes, options).examples["joy"]
    assert first == select_examples(nodes, options).examples["joy"]
    assert (len(polar(first, "positive")), len(polar(first, "negative"))) == (15, 15)
    assert [e.key for e in first if e.polarity == "positive"] == sorted(polar(first, "positive"))
    reseeded = select_examples(nodes, ExtractOptions(**{**vars(options), "seed": 1})).examples["joy"]
    assert set(polar(reseeded, "negative")) != set(polar(first, "negative"))


def test_default_emotions_are_the_tags_with_enough_positives() -> None:
    nodes = [node(f"j{i}", text(i), joy=9) for i in range(3)] + [node("c", text(9), calm=9)]
    nodes += [node(f"n{i}", text(20 + i), tired=2) for i in range(3)]
    selection = select_examples(nodes, ExtractOptions(min_positives=2, min_content_chars=10))
    assert selection.emotions == ("joy",)
    assert {s.key: s.reason for s in selection.skipped_emotions}["calm"].startswith("1 positives")


def test_no_emotion_meeting_the_thresholds_is_an_error_naming_the_best_tags() -> None:
    nodes = [node("a", text(1), joy=9), node("b", text(2), calm=1)]
    with pytest.raises(ExamplesError, match=r"no emotion in test graph .* joy \(1\).*--min-positives"):
        select_examples(nodes, ExtractOptions(min_content_chars=10), "test graph")


def test_a_requested_emotion_with_too_few_positives_is_an_error() -> None:
    nodes = [node("a", text(1), joy=9), node("b", text(2), calm=1)]
    with pytest.raises(ExamplesError, match=r"awe has 0"):
        select_examples(nodes, ExtractOptions(**{**vars(LOOSE), "emotions": ("joy", "Awe")}))


def test_an_emotion_without_negatives_is_dropped_or_refused() -> None:
    nodes = [node("a", text(1), joy=9, calm=9), node("b", text(2), joy=5, calm=0)]
    assert select_examples(nodes, LOOSE).emotions == ("calm",)
    with pytest.raises(ExamplesError, match="no negatives .* for: joy"):
        select_examples(nodes, ExtractOptions(**{**vars(LOOSE), "emotions": ("joy",)}))


def test_an_empty_graph_is_an_error() -> None:
    with pytest.raises(ExamplesError, match="my graph has no nodes"):
        select_examples([], ExtractOptions(), "my graph")


def test_invalid_options_are_reported_together() -> None:
    options = ExtractOptions(min_positive_score=11, max_examples_per_emotion=1, heldout_fraction=1.0,
                             emotions=("no way!",))
    with pytest.raises(ExamplesError) as error:
        select_examples([node("a", text(1), joy=9)], options)
    message = str(error.value)
    assert "\n" not in message
    for field in ("min_positive_score=11", "max_examples_per_emotion=1", "heldout_fraction=1.0", "emotions="):
        assert field in message


def test_tag_frequencies_rank_by_positives_and_mark_reference_concepts() -> None:
    nodes = [node("a", text(1), joy=9, warmth=9), node("b", text(2), warmth=8, calm=2), node("c", text(3), calm=3)]
    rows = tag_frequencies(score_graph(nodes, LOOSE), 8)
    assert [(r.name, r.tagged, r.positives) for r in rows] == [("warmth", 2, 2), ("joy", 1, 1), ("calm", 2, 0)]
    assert {r.name: r.cluster for r in rows} == {"warmth": None, "joy": None, "calm": "Peaceful Contentment"}


def test_bundled_sample_gives_clean_examples_for_every_emotion(sample_graph_path: Path, tmp_path: Path) -> None:
    selection = select_examples(read_graph_file(sample_graph_path), ExtractOptions())
    assert len(selection.emotions) >= 16
    for emotion in selection.emotions:
        examples = selection.examples[emotion]
        assert {e.polarity for e in examples} == {"positive", "negative"}
        assert {e.split for e in examples} == {"train", "heldout"}
        assert all(count_mentions(e.text, emotion) == 0 for e in examples), f"{emotion} text names {emotion}"
        (tmp_path / f"{emotion}.jsonl").write_text("".join(e.to_json() + "\n" for e in examples))
        assert read_examples_file(tmp_path / f"{emotion}.jsonl") == list(examples)


def test_example_files_without_source_or_topic_load_as_graph_rows(tmp_path: Path) -> None:
    old = tmp_path / "joy.jsonl"
    old.write_text('{"emotion": "joy", "polarity": "positive", "text": "t", "key": "k", "score": 9, "split": "train"}\n')
    (example,) = read_examples_file(old)
    assert (example.source, example.topic, example.group) == ("graph", None, "k")


def test_synthetic_rows_keep_source_and_topic_and_group_by_topic(tmp_path: Path) -> None:
    row = Example("joy", "positive", "A story.", "story/joy/baking/0", 10.0, "heldout", "synthetic", "baking")
    (tmp_path / "joy.jsonl").write_text(row.to_json() + "\n")
    assert read_examples_file(tmp_path / "joy.jsonl") == [row]
    assert row.group == "topic:baking"


def test_an_unknown_source_is_refused_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "joy.jsonl"
    bad.write_text('{"emotion": "joy", "polarity": "positive", "text": "t", "key": "k", "score": 9, "split": "train", '
                   '"source": "web"}\n')
    with pytest.raises(ExamplesError, match=r"joy.jsonl:1: source 'web'"):
        read_examples_file(bad)
