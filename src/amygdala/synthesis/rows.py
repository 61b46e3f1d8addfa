"""Kept stories and dialogues -> examples, one list per emotion, split by topic; and which emotions to ask for.

For each emotion E of the run:

- **positives**: the kept stories written for E (score 10);
- **negatives** (score 0): every kept neutral dialogue, plus up to ``negative_ratio`` x the positives of the
  other emotions' kept stories (a seeded hash ranking), leaving out any text that names E (the extract rule
  with ``max_negative_mentions = 0``). Dialogues are positive for no concept, so training also sees them as
  the neutral texts of ``--remove-neutral-pcs``.

**Splits by topic**: ``round(heldout_fraction x topics)`` of the run's topics (at least one when the fraction is
positive and there are two topics or more, never all of them), chosen by a seeded hash, are ``heldout``; every
text of a topic sits on that topic's side. Each row's key is ``synthetic/<kind or emotion>/<topic>/<index>``,
its ``source`` ``synthetic`` and its ``topic`` the topic, so folds group it by topic too (``Example.group``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from amygdala.extraction.emotions import (
    count_mentions,
    hand_listed_emotions,
    mention_pattern,
    normalize_name,
    reference_emotions,
)
from amygdala.extraction.examples import Example, Split
from amygdala.synthesis.journal import Reply
from amygdala.synthesis.prompts import SynthesisError

POSITIVE_SCORE = 10.0


def _rank(seed: int, *parts: object) -> str:
    return hashlib.sha256(json.dumps([seed, *parts], ensure_ascii=False).encode("utf-8")).hexdigest()


def topic_splits(topics: Sequence[str], fraction: float, seed: int) -> dict[str, Split]:
    """Each topic's split: the ``round(fraction x n)`` topics ranked first by a seeded hash are held out."""
    n_heldout = round(fraction * len(topics))
    if fraction > 0 and len(topics) >= 2:
        n_heldout = min(max(n_heldout, 1), len(topics) - 1)
    held = set(sorted(topics, key=lambda topic: _rank(seed, "split", topic))[:n_heldout])
    return {topic: "heldout" if topic in held else "train" for topic in topics}


def _row(emotion: str, polarity: str, reply: Reply, splits: dict[str, Split]) -> Example:
    owner = reply.emotion if reply.kind == "story" else "neutral"
    return Example(emotion, "positive" if polarity == "positive" else "negative", reply.text.strip(),
                   f"synthetic/{owner}/{reply.topic}/{reply.index}",
                   POSITIVE_SCORE if polarity == "positive" else 0.0, splits[reply.topic], "synthetic", reply.topic)


def emotion_rows(kept: Sequence[Reply], emotions: Sequence[str], splits: dict[str, Split], *,
                 negative_ratio: float = 2.0, seed: int = 0) -> dict[str, list[Example]]:
    """Emotion -> its examples (positives, then negatives; each in key order); see the module docstring."""
    stories = [reply for reply in kept if reply.kind == "story"]
    dialogues = [reply for reply in kept if reply.kind == "neutral"]
    rows: dict[str, list[Example]] = {}
    for emotion in emotions:
        pattern = mention_pattern(emotion)
        positives = [r for r in stories if r.emotion == emotion]
        others = sorted((r for r in stories if r.emotion != emotion and not count_mentions(r.text, pattern)),
                        key=lambda r: _rank(seed, "negative", emotion, *r.key))
        others = sorted(others[: round(negative_ratio * len(positives))], key=lambda r: r.key)
        neutral = [r for r in dialogues if not count_mentions(r.text, pattern)]
        rows[emotion] = ([_row(emotion, "positive", r, splits) for r in positives]
                         + [_row(emotion, "negative", r, splits) for r in neutral + others])
    return rows


def known_emotions() -> set[str]:
    """Every concept a story can be asked for: the 171-concept reference list and the hand-listed word forms."""
    return {concept.name for concept in reference_emotions()} | hand_listed_emotions()


def _sparse_emotions(extract_dir: Path, min_positives: int) -> list[str]:
    """The emotions an extract dir counted (written or skipped) with fewer than ``min_positives`` positives."""
    try:
        manifest = json.loads((Path(extract_dir) / "extract.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SynthesisError(f"--sparse-from {extract_dir}: cannot read its extract.json ({exc}): give a dir "
                             "`amygdala extract` wrote") from None
    counts = manifest.get("counts", {}) if isinstance(manifest, dict) else {}
    skipped = [row.get("emotion") for row in manifest.get("skipped_emotions", []) if isinstance(row, dict)]
    sparse = [name for name, row in counts.items()
              if sum(row.get("positive", {}).values()) < min_positives]
    return sorted({normalize_name(str(name)) for name in [*sparse, *skipped] if name})


def choose_emotions(names: str | None, *, sparse_from: Path | None = None, min_positives: int = 10) -> tuple[str, ...]:
    """The emotions of a run: a comma-separated list, ``all171`` (the reference list, in its order), and/or the
    sparse ones of an extract dir; unknown names are one error naming them all."""
    chosen: list[str] = []
    if names is not None and names.strip().lower() == "all171":
        chosen = [concept.name for concept in reference_emotions()]
    elif names is not None:
        requested = [normalize_name(name) for name in names.split(",") if name.strip()]
        if unknown := [name for name in requested if name not in known_emotions()]:
            raise SynthesisError(f"unknown emotion(s) {', '.join(unknown)}: name concepts of the 171-concept list "
                                 "(`amygdala emotions`), or pass --emotions all171")
        chosen = requested
    if sparse_from is not None:
        if not (sparse := _sparse_emotions(sparse_from, min_positives)):
            raise SynthesisError(f"--sparse-from {sparse_from}: no emotion there has fewer than {min_positives} "
                                 "positives: raise --min-positives or name the emotions with --emotions")
        chosen += sparse
    if not chosen:
        raise SynthesisError("no emotions to write stories for: pass --emotions (a list, or all171) or --sparse-from")
    return tuple(dict.fromkeys(chosen))


__all__ = ["POSITIVE_SCORE", "choose_emotions", "emotion_rows", "known_emotions", "topic_splits"]
