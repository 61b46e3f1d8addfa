"""The train benchmark's data: the bundled sample graph's nodes (or synthetic sentences) as capped examples."""

from __future__ import annotations

import hashlib
import json
import re

from amygdala.extraction.examples import Example
from amygdala.extraction.sources.graph_file import bundled_sample_path

TAG_LINE = re.compile(r"^\s*([A-Za-z][\w-]*:\d+(\.\d+)?\s*)+$")

#: (key, text, tags) of one node.
Node = tuple[str, str, dict[str, float]]


def _stable_rank(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()


def load_nodes(max_chars: int) -> list[Node]:
    """(key, text, tags) per node of the bundled sample (plain JSON; trailing tag lines removed), texts cut at a
    word boundary to ``max_chars``; synthetic sentences when the sample is absent."""
    sample = bundled_sample_path()
    if not sample.exists():
        return _synthetic_nodes()
    nodes = []
    for raw in sample.read_text(encoding="utf-8").splitlines():
        row = json.loads(raw)
        lines, tags = row["content"].split("\n"), {}
        while lines and TAG_LINE.match(lines[-1]):
            for token in lines.pop().split():
                name, score = token.split(":")
                tags[name.lower()] = float(score)
        text = " ".join("\n".join(lines).split())
        if len(text) > max_chars:
            text = text[:max_chars].rsplit(" ", 1)[0]
        nodes.append((row["key"], text, tags))
    return nodes


def _synthetic_nodes() -> list[Node]:
    moods = ["calm", "warmth", "tired", "amused", "hopeful", "curiosity", "sad", "anxious", "proud",
             "frustrated", "relieved", "guilty", "grateful"]
    subjects = ["the release", "my sister", "the compiler", "a long walk", "the garden", "the meeting", "rain"]
    nodes = []
    for index in range(270):
        mood, other = moods[index % 13], moods[(index * 7 + 3) % 13]
        text = (f"Entry {index}: thinking about {subjects[index % 7]} left me {mood}, "
                f"and a little {other} as the day went on{'.!?'[index % 3]}")
        nodes.append((f"node-{index}", text, {mood: 8.0, other: 4.0}))
    return nodes


def build_examples(nodes: list[Node], n_concepts: int, pairs: int, min_score: float = 7.0) -> list[Example]:
    """For the ``n_concepts`` most tagged emotions: ``pairs`` positives (score >= min_score) and as many
    negatives (tag absent), both picked by one seeded hash ranking of node keys, as a capped extract would."""
    unique = {text: (key, tags) for key, text, tags in nodes}
    ranked = sorted(unique.items(), key=lambda item: _stable_rank("bench", item[1][0]))
    counts: dict[str, int] = {}
    for _, (_, tags) in ranked:
        for name, score in tags.items():
            counts[name] = counts.get(name, 0) + (score >= min_score)
    concepts = sorted(counts, key=lambda name: (-counts[name], name))[:n_concepts]
    examples = []
    for concept in concepts:
        positive = [(t, k) for t, (k, tags) in ranked if tags.get(concept, 0) >= min_score][:pairs]
        negative = [(t, k) for t, (k, tags) in ranked if concept not in tags][:len(positive)]
        examples += [Example(concept, "positive", t, k, 9.0, "train") for t, k in positive]
        examples += [Example(concept, "negative", t, k, 0.0, "train") for t, k in negative]
    return examples


def scaled_examples(examples: list[Example], factor: int) -> list[Example]:
    """``factor`` distinct copies of every text (a copy number in front), labels kept: ``factor`` x the work."""
    return [Example(e.emotion, e.polarity, f"({copy}) {e.text}" if copy else e.text, f"{e.key}#{copy}", e.score,
                    e.split) for copy in range(factor) for e in examples]
