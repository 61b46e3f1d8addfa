"""Property-based tests (hypothesis): example selection against an independent reference, and the readers of
every text input (tag lines, graph lines, example lines, readout input lines) on arbitrary text.

The selection reference recomputes positives and negatives from the generated tags and bodies themselves (not from
the parser): bodies are built from neutral words and the emotions' exact names, so a mention is a word equal to
the emotion's name. Nodes without a valid tag are untagged neutral baselines (negatives for every emotion they do
not name) or skipped, as the generated ``untagged`` option says. Tag parser round trips on ASCII prose are in
test_tags.py; here bodies are arbitrary Unicode.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from amygdala.extraction.examples import ExamplesError, _parse_example
from amygdala.extraction.scoring import ExtractOptions, score_graph
from amygdala.extraction.sources import MemoryNode, SourceError
from amygdala.extraction.sources.graph_file import parse_graph_lines
from amygdala.extraction.stage import Selection, select_examples
from amygdala.extraction.tags import format_content, is_tag_line, parse_content
from amygdala.readout.view import ReadoutInputError, parse_input_lines

EMOTIONS = ("calm", "joy", "warmth")
NEUTRAL = ("table", "river", "seven", "window", "paper", "garden", "station", "kettle", "ladder", "orange")
BAD_TOKENS = {"calm:11": "calm", "joy:": "joy", "warmth:x": "warmth"}
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass(frozen=True)
class Drawn:
    """One generated node: its body, valid tags and unreadable tag names, as the generator made them."""

    key: str
    body: str
    scores: dict[str, float]
    bad: tuple[str, ...]

    def node(self) -> MemoryNode:
        tag_line = " ".join([*(f"{name}:{score:g}" for name, score in self.scores.items()), *self.bad])
        return MemoryNode(self.key, "journal", "", f"{self.body}\n{tag_line}" if tag_line else self.body)


words = st.sampled_from(NEUTRAL + EMOTIONS + ("Calm", "JOY"))
scores = st.dictionaries(st.sampled_from(EMOTIONS), st.sampled_from([0, 0.5, 1, 2, 5, 7.5, 8, 9, 10]), min_size=1,
                         max_size=3)
drawn_nodes = st.lists(
    st.tuples(st.lists(words, min_size=3, max_size=9).map(" ".join),
              st.integers(0, 9).flatmap(lambda i: st.just({}) if i == 0 else scores),  # 1 in 10: no valid tag
              st.lists(st.sampled_from(sorted(BAD_TOKENS)), max_size=1, unique=True)),
    min_size=4, max_size=28,
).map(lambda rows: [Drawn(f"node-{i:02}", body, scores, tuple(bad)) for i, (body, scores, bad) in enumerate(rows)])
options_st = st.builds(ExtractOptions, min_positive_score=st.sampled_from([5.0, 8.0]),
                       max_negative_mentions=st.sampled_from([0, 1]), min_content_chars=st.just(14),
                       max_examples_per_emotion=st.integers(2, 24), min_positives=st.just(1),
                       max_negative_score=st.sampled_from([0.0, 2.0]),
                       heldout_fraction=st.sampled_from([0.0, 0.3, 0.5]), seed=st.integers(0, 2**31),
                       untagged=st.sampled_from(["negative", "skip"]))


def _text(item: Drawn) -> str | None:
    """The text a node gives, or None when it is skipped for its tags: an untagged node (no valid tag, no bad
    token, or only a bad token that is no tag line: ``joy:``, ``warmth:x``) keeps that token in its text."""
    if item.scores:
        return item.body
    if item.bad == ("calm:11",):  # a tag line without a valid tag
        return None
    return "\n".join([item.body, *item.bad])


def reference(drawn: list[Drawn], options: ExtractOptions) -> dict[str, tuple[set[str], set[str]]]:
    """emotion -> (positive keys, negative keys) before the cap, from the generated data alone."""
    usable, seen_texts = [], set()
    for item in drawn:  # keys are unique and already in sorted order
        text = _text(item)
        if text is None or (not item.scores and options.untagged == "skip") or len(text) < options.min_content_chars:
            continue
        if " ".join(text.split()) in seen_texts:
            continue
        seen_texts.add(" ".join(text.split()))
        usable.append((item, text))
    table = {}
    for emotion in EMOTIONS:
        mentions = {item.key: sum(word == emotion for word in re.findall("[a-z]+", text.lower()))
                    for item, text in usable}
        positive = {item.key for item, _ in usable if item.scores.get(emotion, 0) >= options.min_positive_score}
        negative = {item.key for item, _ in usable if item.scores.get(emotion, 0) <= options.max_negative_score
                    and not (item.scores and BAD_TOKENS.get(item.bad[0] if item.bad else "") == emotion)
                    and mentions[item.key] <= options.max_negative_mentions}
        table[emotion] = (positive, negative)
    return table


def select_or_none(nodes: list[MemoryNode], options: ExtractOptions) -> Selection | None:
    try:
        return select_examples(nodes, options)
    except ExamplesError:
        return None


@FUZZ
@given(drawn_nodes, options_st)
def test_selection_matches_the_reference_and_respects_the_cap(drawn: list[Drawn], options: ExtractOptions) -> None:
    expected = reference(drawn, options)
    kept = sorted(emotion for emotion, (pos, neg) in expected.items() if pos and neg)
    selection = select_or_none([item.node() for item in drawn], options)
    if selection is None:
        assert not kept
        return
    assert list(selection.emotions) == kept
    cap = options.max_examples_per_emotion
    for emotion in kept:
        positives, negatives = expected[emotion]
        examples = selection.examples[emotion]
        chosen = {p: {e.key for e in examples if e.polarity == p} for p in ("positive", "negative")}
        assert chosen["positive"] <= positives and chosen["negative"] <= negatives
        assert all(e.score >= options.min_positive_score for e in examples if e.polarity == "positive")
        assert all(e.score <= options.max_negative_score for e in examples if e.polarity == "negative")
        assert len(examples) == min(cap, len(positives) + len(negatives))
        for polarity, pool in (("positive", positives), ("negative", negatives)):
            assert len(chosen[polarity]) >= min(len(pool), cap // 2)
        assert all(not parse_content(e.text).tag_lines and e.text for e in examples)


@FUZZ
@given(drawn_nodes, options_st, st.randoms(use_true_random=False))
def test_selection_ignores_node_order_and_which_emotions_are_chosen(drawn: list[Drawn], options: ExtractOptions,
                                                                   rng: random.Random) -> None:
    nodes = [item.node() for item in drawn]
    selection = select_or_none(nodes, options)
    assume(selection is not None)
    shuffled = nodes[:]
    rng.shuffle(shuffled)
    again = select_examples(shuffled, options)
    assert again.examples == selection.examples
    splits: dict[str, str] = {}
    for emotion in selection.emotions:
        alone = select_examples(nodes, ExtractOptions(**{**vars(options), "emotions": (emotion,)}))
        assert alone.examples[emotion] == selection.examples[emotion]
        for example in selection.examples[emotion]:  # held out by node: one split per key, whatever the emotion
            assert splits.setdefault(example.key, example.split) == example.split


@FUZZ
@given(drawn_nodes, options_st)
def test_a_node_split_depends_only_on_its_key_and_the_seed(drawn: list[Drawn], options: ExtractOptions) -> None:
    nodes = [item.node() for item in drawn]
    full = {node.key: node.split for node in score_graph(nodes, options).nodes}
    for subset in (nodes[::2], nodes[1::3], list(reversed(nodes))):
        splits = {node.key: node.split for node in score_graph(subset, options).nodes}
        assert all(full[key] == split for key, split in splits.items() if key in full)  # a kept duplicate text
    selection = select_or_none(nodes, options)
    if selection is not None:
        assert all(full[e.key] == e.split for examples in selection.examples.values() for e in examples)
    if options.heldout_fraction == 0:
        assert set(full.values()) <= {"train"}


# ---- readers of text inputs never fail with anything but their own one-line error ----

tag_soup = st.text(alphabet="abcJOY_-:.0123456789+ \t\n\r\x0b\x0c\x1c\x85\u2028\u00a0é", max_size=120)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), tag_soup))
def test_parse_content_never_raises_and_reparsing_is_stable(content: str) -> None:
    parsed = parse_content(content)
    assert parsed.body == parsed.body.strip() and parsed.body in content
    for line in parsed.tag_lines:
        assert is_tag_line(line)
    again = parse_content(format_content(parsed.body, dict(parsed.scores))) if parsed.body else None
    if again is not None and parsed.scores:
        assert (again.body, dict(again.scores), again.problems) == (parsed.body, dict(parsed.scores), ())


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=200),
       st.dictionaries(st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,10}", fullmatch=True).map(str.lower),
                       st.floats(0, 10, allow_nan=False), min_size=1, max_size=5))
def test_format_then_parse_round_trips_any_unicode_body(body: str, scores: dict[str, float]) -> None:
    body = body.strip()
    assume(body and not is_tag_line(body.split("\n")[-1]))
    parsed = parse_content(format_content(body, scores))
    assert (parsed.body, dict(parsed.scores), parsed.problems) == (body, scores, ())


json_values = st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=4), max_leaves=12)
json_rows = st.dictionaries(st.sampled_from(["key", "content", "node_type", "timestamp", "type", "name", "entityType",
                                             "observations", "text", "id", "emotion", "polarity", "score", "split"]),
                            json_values, max_size=8).map(json.dumps)
lines = st.lists(st.one_of(json_rows, st.text(max_size=60), st.just("[" * 5000), st.just('{"key": "\\ud800"}')),
                 max_size=6)


@settings(max_examples=200, deadline=None)
@given(lines)
def test_input_readers_raise_only_their_own_one_line_errors(rows: list[str]) -> None:
    readers = [(lambda: parse_graph_lines(rows, "graph.jsonl"), SourceError),
               (lambda: parse_input_lines(rows, "texts.jsonl"), ReadoutInputError),
               (lambda: [_parse_example(row, f"calm.jsonl:{n}") for n, row in enumerate(rows, 1) if row.strip()],
                ExamplesError)]
    for read, own_error in readers:
        try:
            read()
        except own_error as exc:
            assert "\n" not in str(exc)
