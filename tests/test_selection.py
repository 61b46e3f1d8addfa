"""Selection internals against independent references: the mention count (the emotions regex itself) and the
capped sampling (``examples.seeded_fraction``, the documented ranking)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from amygdala.extraction.emotions import count_mentions
from amygdala.extraction.scoring import ExtractOptions, ScoredGraph, ScoredNode, seeded_fraction
from amygdala.extraction.selection import emotion_examples, mention_counter

EMOTIONS = ("calm", "guilty", "warmth", "anxious", "at_ease", "sad", "overwhelmed", "clarity")
# Characters the case-insensitive regex matches to ASCII letters though they are not ASCII (Kelvin sign, long s,
# dotted and dotless i), full case folds (sharp s, ligatures), separators and the letters of the word forms.
TRICKY = "KſİıßẞﬀΣς \t\n-_.,!" + "calmguiltywarmthearteanxiousnessclarityoverwhelmedsadCALMGUILTYWARMSAD"


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(EMOTIONS), st.text(alphabet=TRICKY, max_size=40))
def test_mention_counter_equals_the_regex_count(emotion: str, text: str) -> None:
    assert mention_counter(emotion)(text) == count_mentions(text, emotion)


def test_mention_counter_finds_unusual_case_forms() -> None:
    assert mention_counter("guilty")("GUİLTY and guılty") == count_mentions("GUİLTY and guılty", "guilty") == 2
    assert mention_counter("sad")("ſad") == 1 and mention_counter("calm")("no mention") == 0
    assert mention_counter("warmth")("a warm-hearted note") == 1


def _node(index: int, score: float) -> ScoredNode:
    return ScoredNode(f"key-{index:04}", f"Entry {index} about the canal.", {"joy": score}, frozenset(), "train")


def test_capped_sampling_follows_the_seeded_fraction_ranking() -> None:
    nodes = tuple(_node(i, 9.0 if i % 5 == 0 else 0.0) for i in range(400))
    graph = ScoredGraph(len(nodes), nodes, (), ())
    options = ExtractOptions(max_examples_per_emotion=30, seed=7)
    examples, found = emotion_examples(graph, "joy", options)
    for polarity, pool in (("positive", [n for n in nodes if n.scores["joy"] >= 8]),
                           ("negative", [n for n in nodes if n.scores["joy"] == 0])):
        ranked = sorted(pool, key=lambda n: (seeded_fraction("sample", 7, "joy", polarity, n.key), n.key))
        assert [e.key for e in examples if e.polarity == polarity] == sorted(n.key for n in ranked[:15])
    assert (found.positive, found.negative) == (80, 320)
