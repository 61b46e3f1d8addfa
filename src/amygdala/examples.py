"""Training examples: memory nodes -> ``(emotion, polarity, text)`` rows, one ``<emotion>.jsonl`` per emotion.

Each line: ``{"emotion", "polarity": "positive"|"negative", "text", "key", "score", "split": "train"|"heldout"}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Polarity = Literal["positive", "negative"]
Split = Literal["train", "heldout"]


class ExamplesError(ValueError):
    """An examples directory or file is unusable: names the file, the line and the problem."""


@dataclass(frozen=True)
class Example:
    emotion: str
    polarity: Polarity
    text: str
    key: str
    score: float
    split: Split

    def to_json(self) -> str:
        return json.dumps(
            {"emotion": self.emotion, "polarity": self.polarity, "text": self.text,
             "key": self.key, "score": self.score, "split": self.split},
            ensure_ascii=False,
        )


_FIELDS = ("emotion", "polarity", "text", "key", "score", "split")


def _parse_example(raw: str, where: str) -> Example:
    try:
        row = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ExamplesError(f"{where}: invalid JSON ({exc.msg})") from None
    if not isinstance(row, dict):
        raise ExamplesError(f"{where}: expected a JSON object")
    missing = [name for name in _FIELDS if name not in row]
    if missing:
        raise ExamplesError(f"{where}: missing field(s) {', '.join(missing)}")
    if row["polarity"] not in ("positive", "negative"):
        raise ExamplesError(f"{where}: polarity {row['polarity']!r} must be 'positive' or 'negative'")
    if row["split"] not in ("train", "heldout"):
        raise ExamplesError(f"{where}: split {row['split']!r} must be 'train' or 'heldout'")
    return Example(str(row["emotion"]), row["polarity"], str(row["text"]), str(row["key"]),
                   float(row["score"]), row["split"])


def read_examples_file(path: Path) -> list[Example]:
    """Read one ``<emotion>.jsonl`` file, reporting the line number of any bad row."""
    examples = []
    with path.open(encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            if raw.strip():
                examples.append(_parse_example(raw, f"{path}:{number}"))
    return examples


def read_examples(directory: Path, emotions: list[str] | None = None) -> list[Example]:
    """Read every ``<emotion>.jsonl`` of an examples dir (sorted by emotion), or only the named emotions."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ExamplesError(f"training data dir {directory} does not exist")
    files = {p.stem: p for p in sorted(directory.glob("*.jsonl"))}
    if not files:
        raise ExamplesError(f"training data dir {directory} holds no <emotion>.jsonl files: run `amygdala extract` first")
    wanted = sorted(files) if emotions is None else emotions
    unknown = [name for name in wanted if name not in files]
    if unknown:
        raise ExamplesError(f"training data dir {directory} has no examples for {', '.join(unknown)}; "
                            f"available: {', '.join(sorted(files))}")
    return [example for name in wanted for example in read_examples_file(files[name])]
