"""Training examples: ``(emotion, polarity, text)`` rows, one ``<emotion>.jsonl`` per emotion, read and typed
(``scoring`` scores memory nodes, ``selection`` chooses the rows, ``stage`` writes them).

Each line: ``{"emotion", "polarity": "positive"|"negative", "text", "key", "score", "split": "train"|"heldout",
"source": "graph"|"synthetic", "topic"}`` (``topic`` only for synthetic rows). Files written before ``source`` and
``topic`` existed still load: their rows are ``source: "graph"`` without a topic.

Selection (``selection.select_examples``), for each emotion E:

- **positive**: E's score >= ``min_positive_score``;
- **negative**: E's score <= ``max_negative_score`` (a tag absent from the node's tag lines counts as 0; a tag
  present but unreadable, like ``joy:11``, makes the node neither), and the text names E (``emotions.word_forms``)
  at most ``max_negative_mentions`` times.

A node without any tag line is a neutral baseline (``untagged="negative"``, the default): a negative, with score
0, for every emotion whose text it does not name; ``untagged="skip"`` skips it. Nodes whose tag lines hold no
valid tag, or shorter than ``min_content_chars`` once their tag lines are removed, are skipped; duplicate texts
(after whitespace normalisation) count once. The held-out split is by node (a hash of seed and key), so it is
stable and independent of which emotions are chosen. Capping is a seeded hash ranking, so the output does not
depend on the order nodes arrive in.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from amygdala.errors import AmygdalaError

Polarity = Literal["positive", "negative"]
Split = Literal["train", "heldout"]
Source = Literal["graph", "synthetic"]
POLARITIES: tuple[Polarity, ...] = ("positive", "negative")
SPLITS: tuple[Split, ...] = ("train", "heldout")
SOURCES: tuple[Source, ...] = ("graph", "synthetic")


class ExamplesError(AmygdalaError):
    """An examples directory or file is unusable: names the file, the line and the problem."""


@dataclass(frozen=True)
class Example:
    emotion: str
    polarity: Polarity
    text: str
    key: str
    score: float
    split: Split
    source: Source = "graph"
    topic: str | None = None

    @property
    def group(self) -> str:
        """What splits and folds keep on one side: the topic of a synthetic row (a topic never sits on both
        sides), else the node key."""
        return f"topic:{self.topic}" if self.topic is not None else self.key

    def to_json(self) -> str:
        row: dict[str, object] = {"emotion": self.emotion, "polarity": self.polarity, "text": self.text,
                                  "key": self.key, "score": self.score, "split": self.split, "source": self.source}
        if self.topic is not None:
            row["topic"] = self.topic
        return json.dumps(row, ensure_ascii=False)


_FIELDS = ("emotion", "polarity", "text", "key", "score", "split")


def _parse_example(raw: str, where: str) -> Example:
    try:
        row = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ExamplesError(f"{where}: invalid JSON ({exc.msg})") from None
    except RecursionError:
        raise ExamplesError(f"{where}: invalid JSON (nested too deeply)") from None
    if not isinstance(row, dict):
        raise ExamplesError(f"{where}: expected a JSON object")
    missing = [name for name in _FIELDS if name not in row]
    if missing:
        raise ExamplesError(f"{where}: missing field(s) {', '.join(missing)}")
    if row["polarity"] not in ("positive", "negative"):
        raise ExamplesError(f"{where}: polarity {row['polarity']!r} must be 'positive' or 'negative'")
    if row["split"] not in ("train", "heldout"):
        raise ExamplesError(f"{where}: split {row['split']!r} must be 'train' or 'heldout'")
    score = row["score"]
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
        raise ExamplesError(f"{where}: score {json.dumps(score)[:40]} must be a finite number")
    source, topic = row.get("source", "graph"), row.get("topic")
    if source not in SOURCES:
        raise ExamplesError(f"{where}: source {source!r} must be 'graph' or 'synthetic'")
    if topic is not None and not isinstance(topic, str):
        raise ExamplesError(f"{where}: topic {json.dumps(topic)[:40]} must be a string")
    return Example(str(row["emotion"]), row["polarity"], str(row["text"]), str(row["key"]), float(score), row["split"],
                   source, topic)


def read_examples_file(path: Path) -> list[Example]:
    """Read one ``<emotion>.jsonl`` file, reporting the line number of any bad row."""
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as exc:
        raise ExamplesError(f"{path} is not UTF-8 text (byte {exc.start}): rerun `amygdala extract`") from None
    examples = [_parse_example(raw, f"{path}:{number}") for number, raw in enumerate(lines, start=1) if raw.strip()]
    if not examples:
        raise ExamplesError(f"{path} holds no examples: rerun `amygdala extract`, or remove the file")
    return examples


def read_examples(directory: Path, emotions: list[str] | None = None) -> list[Example]:
    """Read every ``<emotion>.jsonl`` of an examples dir (sorted by emotion), or only the named emotions."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ExamplesError(f"training data dir {directory} does not exist")
    files = {p.stem: p for p in sorted(directory.glob("*.jsonl"))}
    if not files:
        raise ExamplesError(f"training data dir {directory} holds no <emotion>.jsonl files: "
                            "run `amygdala extract` first")
    wanted = sorted(files) if emotions is None else emotions
    unknown = [name for name in wanted if name not in files]
    if unknown:
        raise ExamplesError(f"training data dir {directory} has no examples for {', '.join(unknown)}; "
                            f"available: {', '.join(sorted(files))}")
    return [example for name in wanted for example in read_examples_file(files[name])]


def read_example_dirs(directories: Sequence[Path], emotions: list[str] | None = None) -> list[Example]:
    """The examples of several dirs together (e.g. a graph's and a synthesized one), dir by dir; with
    ``emotions``, each named emotion must be in at least one dir (the dirs lacking it are skipped)."""
    if len(directories) == 1:
        return read_examples(directories[0], emotions)
    available = [{p.stem for p in Path(d).glob("*.jsonl")} if Path(d).is_dir() else set() for d in directories]
    if emotions is not None and (unknown := [e for e in emotions if not any(e in names for names in available)]):
        raise ExamplesError(f"no training data dir has examples for {', '.join(unknown)}; available: "
                            f"{', '.join(sorted(set().union(*available)))}")
    return [example for directory, names in zip(directories, available)
            for example in read_examples(directory, None if emotions is None else
                                         [e for e in emotions if e in names])]


