"""Example selection: scored nodes -> each chosen emotion's capped, deterministic examples (rules in ``examples``).

For each emotion, the positives and negatives are counted before the cap (``EmotionCandidates``), then a seeded
hash ranking picks the capped ones, so the result does not depend on the order nodes arrive in.
"""

from __future__ import annotations

import hashlib
import heapq
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from amygdala.extraction.emotions import mention_pattern, normalize_name, word_forms
from amygdala.extraction.examples import POLARITIES, SPLITS, Example, ExamplesError, Polarity
from amygdala.extraction.scoring import ExtractOptions, ScoredGraph, ScoredNode, SkippedNode, score_graph
from amygdala.extraction.sources import LogCounts, MemoryGraph, MemoryNode

_LISTED = 8


@dataclass(frozen=True)
class EmotionCandidates:
    """Before the cap: how many nodes qualify for one emotion, and how many negatives were dropped for naming it."""

    positive: int
    negative: int
    negative_naming_emotion: int


@dataclass(frozen=True)
class Selection:
    """The examples of every chosen emotion (in output order), with the bookkeeping ``extract.json`` records."""

    graph: ScoredGraph
    emotions: tuple[str, ...]
    examples: Mapping[str, tuple[Example, ...]]
    candidates: Mapping[str, EmotionCandidates]
    skipped_emotions: tuple[SkippedNode, ...] = field(default=())
    log: LogCounts | None = None
    unknown_fields: tuple[str, ...] = ()

    def untagged_used(self) -> int:
        """Untagged (neutral baseline) nodes that are in at least one emotion's examples."""
        untagged = {node.key for node in self.graph.nodes if not node.tagged}
        return len(untagged.intersection(e.key for examples in self.examples.values() for e in examples))

    def counts(self) -> dict[str, dict[str, dict[str, int]]]:
        """emotion -> polarity -> split -> number of examples."""
        return {emotion: {polarity: {split: sum(1 for e in self.examples[emotion]
                                                if e.polarity == polarity and e.split == split) for split in SPLITS}
                          for polarity in POLARITIES} for emotion in self.emotions}


def _positive_counts(graph: ScoredGraph, min_score: float) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in graph.nodes:
        for name, score in node.scores.items():
            counts[name] = counts.get(name, 0) + (score >= min_score)
    return counts


def _most_positive(counts: Mapping[str, int]) -> str:
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:_LISTED]
    return ", ".join(f"{name} ({count})" for name, count in ranked) or "none"


def choose_emotions(graph: ScoredGraph, options: ExtractOptions,
                    source: str) -> tuple[tuple[str, ...], tuple[SkippedNode, ...]]:
    """The requested emotions (each must have ``min_positives`` positives), or every tag that has that many."""
    counts = _positive_counts(graph, options.min_positive_score)
    need = f"positives (score >= {options.min_positive_score:g}, min_positives={options.min_positives})"
    if options.emotions is not None:
        requested = sorted({normalize_name(name) for name in options.emotions})
        short = [f"{name} has {counts.get(name, 0)}" for name in requested
                 if counts.get(name, 0) < options.min_positives]
        if short:
            raise ExamplesError(f"too few {need} in {source}: {'; '.join(short)}; most positives: "
                                f"{_most_positive(counts)}; pick other --emotions or lower --min-positives")
        return tuple(requested), ()
    chosen = tuple(sorted(name for name, count in counts.items() if count >= options.min_positives))
    if not chosen:
        raise ExamplesError(f"no emotion in {source} has enough {need} among {len(graph.nodes)} usable nodes; most "
                            f"positives: {_most_positive(counts)}; lower --min-positives or --min-positive-score")
    skipped = tuple(SkippedNode(name, f"{count} positives, fewer than min_positives={options.min_positives}")
                    for name, count in sorted(counts.items()) if name not in chosen)
    return chosen, skipped


def cap_sizes(positives: int, negatives: int, cap: int) -> tuple[int, int]:
    """How many positives and negatives fit under ``cap``: half each, the smaller side whole if it fits in half."""
    n_positive = min(positives, max(cap - negatives, cap // 2))
    return n_positive, min(negatives, cap - n_positive)


def _sample(nodes: list[ScoredNode], count: int, emotion: str, polarity: Polarity, seed: int) -> list[ScoredNode]:
    """``count`` nodes chosen by a seeded hash ranking (independent of input order), returned sorted by key.

    The rank of a node is ``examples.seeded_fraction("sample", seed, emotion, polarity, key)``; the hash of the
    shared prefix is computed once and copied per key, which gives the same digests for a fraction of the work."""
    if count >= len(nodes):
        return sorted(nodes, key=lambda node: node.key)
    prefix = hashlib.sha256("\x1f".join(["sample", str(seed), emotion, polarity, ""]).encode())

    def rank(node: ScoredNode) -> tuple[float, str]:
        digest = prefix.copy()
        digest.update(node.key.encode())
        return int.from_bytes(digest.digest()[:8], "big") / 2.0**64, node.key

    return sorted(heapq.nsmallest(count, nodes, key=rank), key=lambda node: node.key)


def _stem(form: str) -> str:
    """The leading ASCII letters and digits of a word form, case-folded, at most four."""
    letters = re.match(r"[a-z0-9]*", form.casefold())
    return letters.group()[:4] if letters else ""


def mention_counter(emotion: str) -> Callable[[str], int]:
    """``text -> how many times it names emotion`` (``emotions.mention_pattern``), without running the regex on
    texts that cannot match. Every match starts with the leading letters of one of the emotion's word forms, and
    each character the case-insensitive regex matches to an ASCII letter case-folds to exactly that letter once
    ``ı`` and ``i̇`` (U+0130 folded) are read as ``i``, so a text whose folded form holds none of them has none."""
    pattern = mention_pattern(emotion)
    stems = {_stem(form) for form in word_forms(emotion)}
    if "" in stems:
        return lambda text: len(pattern.findall(text))

    def count(text: str) -> int:
        folded = text.casefold().replace("\u0131", "i").replace("i\u0307", "i")
        return len(pattern.findall(text)) if any(stem in folded for stem in stems) else 0

    return count


def emotion_examples(graph: ScoredGraph, emotion: str,
                     options: ExtractOptions) -> tuple[tuple[Example, ...], EmotionCandidates]:
    """One emotion's examples (positives, then negatives, each by key) and its candidate counts before the cap."""
    mentions = mention_counter(emotion)
    positives: list[ScoredNode] = []
    negatives: list[ScoredNode] = []
    naming = 0
    for node in graph.nodes:
        score = node.scores.get(emotion, 0.0)
        if score >= options.min_positive_score:
            positives.append(node)
        elif score <= options.max_negative_score and emotion not in node.unreadable:
            if mentions(node.text) <= options.max_negative_mentions:
                negatives.append(node)
            else:
                naming += 1
    n_pos, n_neg = cap_sizes(len(positives), len(negatives), options.max_examples_per_emotion)
    chosen: list[tuple[Polarity, list[ScoredNode]]] = [
        ("positive", _sample(positives, n_pos, emotion, "positive", options.seed)),
        ("negative", _sample(negatives, n_neg, emotion, "negative", options.seed))]
    examples = tuple(Example(emotion, polarity, node.text, node.key, node.scores.get(emotion, 0.0), node.split)
                     for polarity, nodes in chosen for node in nodes)
    return examples, EmotionCandidates(len(positives), len(negatives), naming)


def _summarise_skips(graph: ScoredGraph) -> str:
    reasons: dict[str, int] = {}
    for skipped in graph.skipped_nodes:
        reason = skipped.reason.split(",")[0].split(" node ")[0]
        reasons[reason] = reasons.get(reason, 0) + 1
    if graph.n_untagged:
        reasons["usable but untagged"] = graph.n_untagged
    return "; ".join(f"{count} x {reason}" for reason, count in sorted(reasons.items(), key=lambda i: -i[1])[:3])


def select_examples(nodes: MemoryGraph | Sequence[MemoryNode], options: ExtractOptions,
                    source: str | None = None) -> Selection:
    """Score the graph, choose the emotions and their examples; raises ``ExamplesError`` when nothing qualifies.
    ``source`` names the graph in messages (default: the ``MemoryGraph``'s own description)."""
    options.check()
    memory = nodes if isinstance(nodes, MemoryGraph) else MemoryGraph.of(tuple(nodes))
    source = source or memory.source
    if not memory.nodes:
        raise ExamplesError(f"{source} has no nodes: point the source at a graph with tagged memory nodes")
    graph = score_graph(memory.nodes, options)
    if not any(node.tagged for node in graph.nodes):
        raise ExamplesError(f"none of the {graph.n_nodes} nodes of {source} is usable with its tags "
                            f"({_summarise_skips(graph)}); nodes need a trailing tag line like 'warmth:9 calm:2' "
                            f"and {options.min_content_chars}+ characters of text")
    emotions, skipped = choose_emotions(graph, options, source)
    per_emotion = {emotion: emotion_examples(graph, emotion, options) for emotion in emotions}
    empty = [emotion for emotion, (_, found) in per_emotion.items() if found.negative == 0]
    if empty and (options.emotions is not None or len(empty) == len(emotions)):
        raise ExamplesError(f"no negatives (score <= {options.max_negative_score:g}, naming the emotion at most "
                            f"{options.max_negative_mentions} times) in {source} for: {', '.join(empty)}; raise "
                            f"--max-negative-score or --max-negative-mentions, or choose other --emotions")
    skipped += tuple(SkippedNode(emotion, "no negatives") for emotion in empty)
    kept = tuple(emotion for emotion in emotions if emotion not in empty)
    return Selection(graph, kept, {e: per_emotion[e][0] for e in kept}, {e: per_emotion[e][1] for e in kept},
                     tuple(sorted(skipped, key=lambda s: s.key)), memory.counts, memory.unknown_fields)


__all__ = ["EmotionCandidates", "Selection", "cap_sizes", "choose_emotions", "emotion_examples", "mention_counter",
           "select_examples"]
