"""The editable prompt files of ``amygdala synthesize`` and the requests they become.

A prompt dir holds up to three UTF-8 files; a missing one falls back to the bundled default
(``amygdala/data/synthesis/``):

- ``story.txt``: the request for one story; ``{emotion}`` (the concept's name, underscores as spaces) and
  ``{topic}`` are filled in, and both must appear;
- ``neutral.txt``: the request for one neutral dialogue; ``{topic}`` must appear, ``{emotion}`` must not;
- ``topics.txt``: one topic per line (blank lines and ``#`` comments are ignored), in the order ``--topics K``
  takes them.

Each request is one user message to ``/v1/chat/completions``, keyed by (kind, emotion, topic, index). Its
``fingerprint`` hashes everything that shapes the reply (model, message, max_tokens, temperature, seed), so a
journal line answers a request only when it was asked exactly so.
"""

from __future__ import annotations

import hashlib
import json
import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from amygdala.errors import AmygdalaError

Kind = Literal["story", "neutral"]
PROMPT_FILES = ("story.txt", "neutral.txt", "topics.txt")


class SynthesisError(AmygdalaError):
    """A synthesize input or endpoint problem: names the input, the bad value and the fix."""


@dataclass(frozen=True)
class PromptSet:
    """The two templates, the topics, and where each came from (a file path, or ``bundled``)."""

    story: str
    neutral: str
    topics: tuple[str, ...]
    origins: dict[str, str]

    def to_json(self) -> dict[str, object]:
        return {"story": self.story, "neutral": self.neutral, "n_topics": len(self.topics), "origins": self.origins}


def _read(name: str, folder: Path | None) -> tuple[str, str]:
    if folder is not None and (folder / name).is_file():
        return (folder / name).read_text(encoding="utf-8"), str(folder / name)
    return resources.files("amygdala").joinpath("data", "synthesis", name).read_text(encoding="utf-8"), "bundled"


def _fields(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}


def _template_problems(name: str, template: str, required: set[str], allowed: set[str]) -> list[str]:
    try:
        fields = _fields(template)
    except ValueError as exc:
        return [f"{name}: {exc} (write a literal brace as {{{{ or }}}})"]
    problems = [f"{name} lacks {{{field}}}" for field in sorted(required - fields)]
    return problems + [f"{name} has {{{field}}}, which is not one of {sorted(allowed)}"
                       for field in sorted(fields - allowed)]


def load_prompts(folder: Path | None = None) -> PromptSet:
    """The prompt files of ``folder`` (None: the bundled ones), checked: every problem in one error."""
    if folder is not None and not Path(folder).is_dir():
        raise SynthesisError(f"--prompts {folder} is not a directory: give a folder holding any of "
                             f"{', '.join(PROMPT_FILES)}")
    folder = None if folder is None else Path(folder)
    (story, story_from), (neutral, neutral_from), (topics_text, topics_from) = (_read(n, folder) for n in PROMPT_FILES)
    topics = tuple(dict.fromkeys(line.strip() for line in topics_text.splitlines()
                                 if line.strip() and not line.lstrip().startswith("#")))
    problems = (_template_problems(story_from, story, {"emotion", "topic"}, {"emotion", "topic"})
                + _template_problems(neutral_from, neutral, {"topic"}, {"topic"}))
    if not topics:
        problems.append(f"{topics_from} lists no topics: one topic per line")
    if problems:
        raise SynthesisError("prompt files: " + "; ".join(problems))
    return PromptSet(story.strip(), neutral.strip(), topics,
                     {"story.txt": story_from, "neutral.txt": neutral_from, "topics.txt": topics_from})


@dataclass(frozen=True)
class Request:
    """One chat request: a story of ``emotion`` (None for a neutral dialogue) about ``topic``, number ``index``."""

    kind: Kind
    emotion: str | None
    topic: str
    index: int
    message: str
    seed: int
    fingerprint: str

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.kind, self.emotion or "", self.topic, self.index)


def emotion_label(emotion: str) -> str:
    """How a prompt names a concept: ``at_ease`` -> ``at ease``."""
    return emotion.replace("_", " ")


def make_request(kind: Kind, emotion: str | None, topic: str, index: int, prompts: PromptSet, *, model: str,
                 max_tokens: int, temperature: float, seed: int) -> Request:
    """The request for one story (``kind="story"``) or neutral dialogue, with its own seed and fingerprint."""
    if kind == "story":
        assert emotion is not None
        message = prompts.story.format(emotion=emotion_label(emotion), topic=topic)
    else:
        message = prompts.neutral.format(topic=topic)
    key = json.dumps([kind, emotion or "", topic, index, seed])
    request_seed = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:6], "big")
    shaped = json.dumps([model, message, max_tokens, temperature, request_seed], ensure_ascii=False)
    return Request(kind, emotion, topic, index, message, request_seed,
                   hashlib.sha256(shaped.encode("utf-8")).hexdigest()[:16])


__all__ = ["PROMPT_FILES", "Kind", "PromptSet", "Request", "SynthesisError", "emotion_label", "load_prompts",
           "make_request"]
