"""A generated versioned memory log (the shape real stores export), with the answer computed by the generator.

Every node starts at version 1; every third is revised to version 2, which changes its warmth membership and its
text (warmth:9 -> warmth:2 leaves the positives and is no negative either; warmth:0 -> warmth:9 joins them);
every seventh is then deleted (version 3, ``deleted: true``). Some revisions are written before the version they
replace, and one revision is repeated with the same version (the later copy must win). Timestamps alternate
between integer and float epoch seconds; every record carries fields amygdala ignores.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

IGNORED_FIELDS = ("category", "emotion", "provenance", "weight")


@dataclass(frozen=True)
class LiveNode:
    key: str
    text: str
    scores: dict[str, float]


@dataclass(frozen=True)
class GeneratedLog:
    """The records in log order and what a correct reader must make of them."""

    rows: list[dict[str, object]]
    live: dict[str, LiveNode]
    deleted: set[str] = field(default_factory=set)
    superseded: int = 0

    def positives(self, emotion: str) -> set[str]:
        return {key for key, node in self.live.items() if node.scores.get(emotion, 0) >= 8}

    def negatives(self, emotion: str) -> set[str]:
        return {key for key, node in self.live.items() if node.scores.get(emotion, 0) == 0}

    def write_jsonl(self, path: Path) -> Path:
        path.write_text("".join(json.dumps(row) + "\n" for row in self.rows), encoding="utf-8")
        return path


def _text(index: int, version: int) -> str:
    return f"Entry {index}, revision {version}: rebuilt the search index, then walked home past the canal locks."


def _row(index: int, version: int, scores: dict[str, float], **extra: object) -> dict[str, object]:
    tags = " ".join(f"{name}:{score:g}" for name, score in scores.items())
    timestamp: object = 1770000000 + 3600 * index + version if index % 2 else 1770000000.25 + 3600 * index + version
    return {"uuid": f"uuid-{index:03}", "version": version, "key": f"node-{index:03}", "node_type": "journal",
            "timestamp": timestamp, "content": f"{_text(index, version)}\n{tags}", "weight": 0.5,
            "category": "work", "provenance": {"agent": "test"}, "emotion": max(scores.values()), **extra}


def generate_log(n_nodes: int = 60) -> GeneratedLog:
    """``n_nodes`` nodes tagged with warmth and calm, revised and deleted as the module docstring says."""
    rows: list[dict[str, object]] = []
    live: dict[str, LiveNode] = {}
    deleted: set[str] = set()
    superseded = 0
    for index in range(n_nodes):
        key = f"node-{index:03}"
        first = {"warmth": 9.0 if index % 2 == 0 else 0.0, "calm": 9.0 if index % 4 == 1 else 0.0}
        revised = {**first, "warmth": 2.0 if index % 2 == 0 else 9.0}
        versions = [_row(index, 1, first)]
        if index % 3 == 0:
            revision = _row(index, 2, revised)
            versions = [revision, versions[0]] if index % 9 == 0 else [versions[0], revision]  # out of order too
            if index == 3:  # the same version twice: the later copy wins
                versions.insert(1, _row(index, 2, {**revised, "warmth": 0.0}))
        if index % 7 == 0:
            versions.append({"uuid": f"uuid-{index:03}", "version": 3, "deleted": True, "timestamp": 1780000000})
            deleted.add(key)
        superseded += len(versions) - 1  # every record but the winner (the revision, or the deletion)
        rows.extend(versions)
        if key not in deleted:
            final = revised if index % 3 == 0 else first
            live[key] = LiveNode(key, _text(index, 2 if index % 3 == 0 else 1), final)
    return GeneratedLog(rows, live, deleted, superseded)
