"""Scoring a memory graph for extraction: the options, each node's tags and skip reason, the held-out split and
the tag survey (the rules are described in amygdala.extraction.examples).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

from amygdala.extraction.emotions import normalize_name, reference_clusters
from amygdala.extraction.examples import ExamplesError, Split
from amygdala.extraction.sources import MemoryNode, MemorySource, read_memory
from amygdala.extraction.tags import parse_content

Untagged = Literal["negative", "skip"]


UNTAGGED_MODES: tuple[Untagged, ...] = ("negative", "skip")


@dataclass(frozen=True)
class ExtractOptions:
    """How ``select_examples`` turns scored nodes into examples (CLI flags ``--min-positive-score`` etc.).

    - ``min_positive_score``: a node is a positive for E when E's score is at least this (0-10).
    - ``max_negative_mentions``: a negative for E may name E (any word form) at most this many times.
    - ``min_content_chars``: texts shorter than this, after removing tag lines and stripping, are skipped.
    - ``max_examples_per_emotion``: cap on one emotion's examples (positives + negatives); when both polarities
      exceed half of it, each gets half; else the smaller one is kept whole and the other fills the rest.
    - ``emotions``: the emotions to extract; ``None`` means every tag with at least ``min_positives`` positives.
    - ``min_positives``: positives an emotion needs to be extracted (requested ones too).
    - ``max_negative_score``: a node is a negative for E when E's score is at most this (absent counts as 0).
    - ``heldout_fraction``: share of nodes held out (for every emotion at once), chosen by a hash of seed and key.
    - ``seed``: seeds the held-out split and the sampling under the cap.
    - ``untagged``: nodes without any tag line: ``"negative"`` makes them negatives (score 0) for every emotion,
      under the same mention, length, duplicate and cap rules; ``"skip"`` leaves them out.
    """

    min_positive_score: float = 8.0
    max_negative_mentions: int = 0
    min_content_chars: int = 40
    max_examples_per_emotion: int = 500
    emotions: tuple[str, ...] | None = None
    min_positives: int = 10
    max_negative_score: float = 0.0
    heldout_fraction: float = 0.2
    seed: int = 0
    untagged: Untagged = "negative"

    def problems(self) -> list[str]:
        """Every invalid field, as ``name=value must ...`` phrases (empty when the options are usable)."""
        found = []
        if not 0 <= self.max_negative_score < self.min_positive_score <= 10:
            found.append(f"max_negative_score={self.max_negative_score} and min_positive_score="
                         f"{self.min_positive_score} must satisfy 0 <= max_negative_score < min_positive_score <= 10")
        checks = [("max_negative_mentions", self.max_negative_mentions >= 0, "must be >= 0"),
                  ("min_content_chars", self.min_content_chars >= 0, "must be >= 0"),
                  ("max_examples_per_emotion", self.max_examples_per_emotion >= 2, "must be >= 2"),
                  ("min_positives", self.min_positives >= 1, "must be >= 1"),
                  ("heldout_fraction", 0 <= self.heldout_fraction < 1, "must be within [0, 1)"),
                  ("untagged", self.untagged in UNTAGGED_MODES, "must be 'negative' or 'skip'")]
        found += [f"{name}={getattr(self, name)} {rule}" for name, ok, rule in checks if not ok]
        if self.emotions is not None:
            bad = [name for name in self.emotions if not normalize_name(name).replace("_", "").isalnum()]
            if bad or not self.emotions:
                found.append(f"emotions={list(self.emotions)} must be a non-empty list of tag names")
        return found

    def check(self) -> None:
        """Raise ``ExamplesError`` listing every invalid field at once."""
        if problems := self.problems():
            raise ExamplesError(f"invalid extract options: {'; '.join(problems)}")

    def to_json(self) -> dict[str, object]:
        """The options as JSON-ready parameters (``emotions`` normalised, or ``None``)."""
        params: dict[str, object] = asdict(self)
        params["emotions"] = None if self.emotions is None else sorted({normalize_name(e) for e in self.emotions})
        return params


@dataclass(frozen=True)
class SkippedNode:
    key: str
    reason: str


@dataclass(frozen=True)
class SkippedTag:
    key: str
    token: str
    reason: str


@dataclass(frozen=True)
class ScoredNode:
    """A usable node: its text (tag lines removed), valid scores, tags it had but unreadably, its split, and
    whether it had a tag line (an untagged node is a neutral baseline: no scores, so 0 for every emotion)."""

    key: str
    text: str
    scores: Mapping[str, float]
    unreadable: frozenset[str]
    split: Split
    tagged: bool = True


@dataclass(frozen=True)
class ScoredGraph:
    """The nodes that can give examples, sorted by key, and every node or tag left out with its reason."""

    n_nodes: int
    nodes: tuple[ScoredNode, ...]
    skipped_nodes: tuple[SkippedNode, ...]
    skipped_tags: tuple[SkippedTag, ...]

    @property
    def n_untagged(self) -> int:
        """Usable nodes without a tag line (neutral baselines)."""
        return sum(1 for node in self.nodes if not node.tagged)


@dataclass(frozen=True)
class TagFrequency:
    """One tag across the usable nodes: how many carry it, how many are positives, and its reference cluster."""

    name: str
    tagged: int
    positives: int
    mean_score: float
    cluster: str | None


def seeded_fraction(*parts: object) -> float:
    """A number in [0, 1) fixed by ``parts`` (sha256): the same on every machine and Python run."""
    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def heldout_split(key: str, seed: int, fraction: float) -> Split:
    """The split of a node: held out when the hash of (seed, key) falls under ``fraction``; same for every emotion."""
    return "heldout" if seeded_fraction("split", seed, key) < fraction else "train"


def normalize_whitespace(text: str) -> str:
    """``text`` with every whitespace run collapsed to one space, for duplicate detection."""
    return " ".join(text.split())


def _score_node(node: MemoryNode, options: ExtractOptions, tags: list[SkippedTag]) -> ScoredNode | str:
    """A node -> its ``ScoredNode``, or the reason it is skipped; its tag problems are appended to ``tags``."""
    parsed = parse_content(node.content)
    tags.extend(SkippedTag(node.key, problem.token, problem.reason) for problem in parsed.problems)
    tagged = bool(parsed.tag_lines)
    if not tagged and options.untagged == "skip":
        return "no tag line"
    if tagged and not parsed.scores:
        return "no valid tag in its tag lines"
    if len(parsed.body) < options.min_content_chars:
        return (f"text has {len(parsed.body)} characters without its tag lines, fewer than "
                f"min_content_chars={options.min_content_chars}")
    split = heldout_split(node.key, options.seed, options.heldout_fraction)
    return ScoredNode(node.key, parsed.body, dict(parsed.scores), parsed.unreadable_names, split, tagged)


def score_graph(nodes: Sequence[MemoryNode], options: ExtractOptions) -> ScoredGraph:
    """Parse every node's tag lines and keep the usable ones (sorted by key; first of a duplicate key or text)."""
    kept: list[ScoredNode] = []
    skipped: list[SkippedNode] = []
    tags: list[SkippedTag] = []
    seen_keys: set[str] = set()
    seen_texts: dict[str, str] = {}
    for node in sorted(nodes, key=lambda n: (n.key, n.content)):
        if node.key in seen_keys:
            skipped.append(SkippedNode(node.key, "duplicate key: an earlier node (by content) with this key is used"))
            continue
        seen_keys.add(node.key)
        scored = _score_node(node, options, tags)
        if isinstance(scored, str):
            skipped.append(SkippedNode(node.key, scored))
        elif (first := seen_texts.setdefault(normalize_whitespace(scored.text), node.key)) != node.key:
            skipped.append(SkippedNode(node.key, f"same text as node {first}"))
        else:
            kept.append(scored)
    return ScoredGraph(len(nodes), tuple(kept), tuple(skipped), tuple(tags))


def tag_frequencies(graph: ScoredGraph, min_positive_score: float = 8.0) -> tuple[TagFrequency, ...]:
    """Every tag of the usable nodes, most positives first (then most tagged, then name)."""
    clusters = reference_clusters()
    scores: dict[str, list[float]] = {}
    for node in graph.nodes:
        for name, score in node.scores.items():
            scores.setdefault(name, []).append(score)
    rows = [TagFrequency(name, len(values), sum(1 for v in values if v >= min_positive_score),
                         round(math.fsum(values) / len(values), 2), clusters.get(name))
            for name, values in scores.items()]
    return tuple(sorted(rows, key=lambda row: (-row.positives, -row.tagged, row.name)))


@dataclass(frozen=True)
class TagSurvey:
    """A memory source's tags before any selection: its description, its scored graph and every tag's frequency."""

    source: str
    graph: ScoredGraph
    tags: tuple[TagFrequency, ...]


def survey_tags(source: MemorySource, options: ExtractOptions) -> TagSurvey:
    """Read a memory source and count its tags (``amygdala emotions``, ``amygdala extract --stats``)."""
    options.check()
    memory = read_memory(source)
    graph = score_graph(memory.nodes, options)
    return TagSurvey(memory.source, graph, tag_frequencies(graph, options.min_positive_score))
