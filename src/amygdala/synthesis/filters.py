"""Which written texts become examples: each dropped text is counted under the first reason that applies.

In order, a reply is dropped when it is

1. ``empty``: nothing but whitespace;
2. ``truncated``: generation stopped at ``max_tokens`` (``finish_reason == "length"``);
3. ``refusal``: it opens like a refusal or a disclaimer ("As an AI ...", "I'm sorry, but I can't ...");
4. ``too_short``: fewer than ``min_words`` words;
5. ``names_emotion``: a story names its own emotion, by the extract mention rule (``emotions.count_mentions``,
   every word form, whole words, any case);
6. ``duplicate``: the same text as a kept one, up to case and whitespace;
7. ``near_duplicate``: word ``shingle``-gram Jaccard similarity with a kept text of at least ``near_duplicate``
   (computed exactly, through an inverted index of the shingles).

Replies are judged in key order (kind, emotion, topic, index), never in the order they arrived, so the kept set
is the same however a run was interrupted and resumed.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from amygdala.extraction.emotions import count_mentions
from amygdala.synthesis.journal import Reply

REASONS = ("empty", "truncated", "refusal", "too_short", "names_emotion", "duplicate", "near_duplicate")
_REFUSAL = re.compile(
    r"^\W*(as an ai\b|as a language model|as an assistant|i(?:'m| am) (?:sorry|unable|not able)|"
    r"i (?:can(?:'|no)t|cannot|won't|will not) (?:help|write|assist|provide|create|comply|do that)|"
    r"sorry, (?:but )?i)", re.IGNORECASE)
_WORD = re.compile(r"\w+(?:['’]\w+)*")


@dataclass(frozen=True)
class FilterOptions:
    """The thresholds of the filters; every field is a ``synthesize`` option."""

    min_words: int = 30
    """Drop a text of fewer words (``--min-words``)."""
    near_duplicate: float = 0.6
    """Drop a text whose shingle Jaccard similarity with a kept text is at least this (``--near-duplicate``)."""
    shingle: int = 4
    """Words per shingle."""

    def problems(self) -> list[str]:
        problems = []
        if self.min_words < 1:
            problems.append(f"--min-words {self.min_words} must be >= 1")
        if not 0 < self.near_duplicate <= 1:
            problems.append(f"--near-duplicate {self.near_duplicate} must be in (0, 1]")
        if self.shingle < 1:
            problems.append(f"shingle {self.shingle} must be >= 1")
        return problems

    def to_json(self) -> dict[str, object]:
        return {"min_words": self.min_words, "near_duplicate": self.near_duplicate, "shingle": self.shingle}


@dataclass(frozen=True)
class Filtered:
    """The kept replies (key order) and the dropped ones with their reason, counted per reason and kind."""

    kept: tuple[Reply, ...]
    dropped: tuple[tuple[Reply, str], ...]

    def counts(self) -> dict[str, dict[str, int]]:
        """``{"story": {reason: n, ..., "kept": n}, "neutral": {...}}``, every reason listed."""
        table = {kind: dict.fromkeys((*REASONS, "kept"), 0) for kind in ("story", "neutral")}
        for reply, reason in self.dropped:
            table[reply.kind][reason] += 1
        for reply in self.kept:
            table[reply.kind]["kept"] += 1
        return table


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def text_problem(reply: Reply, options: FilterOptions) -> str | None:
    """The first per-text reason to drop ``reply`` (reasons 1-5 of the module docstring), or None."""
    text = reply.text.strip()
    if not text:
        return "empty"
    if reply.finish_reason == "length":
        return "truncated"
    if _REFUSAL.search(text):
        return "refusal"
    if len(words(text)) < options.min_words:
        return "too_short"
    if reply.kind == "story" and reply.emotion is not None and count_mentions(text, reply.emotion):
        return "names_emotion"
    return None


class _NearDuplicates:
    """Kept texts' shingle sets with an inverted index: the exact best Jaccard of a new text against them."""

    def __init__(self, size: int) -> None:
        self.size, self.sets = size, list[frozenset[tuple[str, ...]]]()
        self.index: defaultdict[tuple[str, ...], list[int]] = defaultdict(list)

    def shingles(self, tokens: list[str]) -> frozenset[tuple[str, ...]]:
        if len(tokens) <= self.size:
            return frozenset([tuple(tokens)])
        return frozenset(tuple(tokens[i:i + self.size]) for i in range(len(tokens) - self.size + 1))

    def best(self, shingles: frozenset[tuple[str, ...]]) -> float:
        overlap = Counter(kept for shingle in shingles for kept in self.index.get(shingle, ()))
        return max((n / (len(shingles) + len(self.sets[k]) - n) for k, n in overlap.items()), default=0.0)

    def add(self, shingles: frozenset[tuple[str, ...]]) -> None:
        for shingle in shingles:
            self.index[shingle].append(len(self.sets))
        self.sets.append(shingles)


def filter_replies(replies: Iterable[Reply], options: FilterOptions = FilterOptions()) -> Filtered:
    """Judge every reply in key order: kept, or dropped with the first reason that applies."""
    kept: list[Reply] = []
    dropped: list[tuple[Reply, str]] = []
    seen: set[str] = set()
    near = _NearDuplicates(options.shingle)
    for reply in sorted(replies, key=lambda r: r.key):
        reason = text_problem(reply, options)
        tokens = words(reply.text)
        shingles = near.shingles(tokens)
        if reason is None and " ".join(tokens) in seen:
            reason = "duplicate"
        elif reason is None and near.best(shingles) >= options.near_duplicate:
            reason = "near_duplicate"
        if reason is not None:
            dropped.append((reply, reason))
            continue
        kept.append(reply)
        seen.add(" ".join(tokens))
        near.add(shingles)
    return Filtered(tuple(kept), tuple(dropped))


__all__ = ["REASONS", "FilterOptions", "Filtered", "filter_replies", "text_problem", "words"]
