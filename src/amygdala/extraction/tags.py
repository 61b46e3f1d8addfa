"""Tag lines: the trailing ``warmth:9 clarity:7.5`` lines that end a memory node's content.

A line is a *tag line* when every whitespace-separated token on it has the ``name:score`` shape (one colon) and
at least one token looks like a real tag (a name with a letter, a number for a score). A line of prose that merely
contains such a token (``we met at 10:30``) is not one, and neither is a lone ``10:30``. The trailing tag lines
of a content are merged; the text above them is the body. Inside a tag line, a malformed or out-of-range token
(``joy:11``, ``joy:``, ``:5``, ``joy:-1``) becomes a ``TagProblem``: it is skipped, the other tags stay.

Tag names are single tokens of letters, digits, ``_`` and ``-``, case-insensitive, normalised with
``emotions.normalize_name`` (``Grief-Stricken`` -> ``grief_stricken``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from amygdala.errors import AmygdalaError
from amygdala.extraction.emotions import normalize_name

MIN_SCORE = 0.0
MAX_SCORE = 10.0

_TOKEN_SHAPE = re.compile(r"^([^:\s]*):([^:\s]*)$")
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_NUMBER = re.compile(r"^[+-]?(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)$")
_LETTER = re.compile(r"[A-Za-z]")


class TagError(AmygdalaError):
    """A tag cannot be written: names the tag, the bad value and the fix."""


@dataclass(frozen=True)
class TagProblem:
    """One token of a tag line that was skipped: the token as written, its tag name if readable, and why."""

    token: str
    name: str | None
    reason: str


@dataclass(frozen=True)
class ParsedContent:
    """A node's content split into its body and its merged trailing tag lines.

    ``scores`` holds every valid tag (normalised name -> score in 0-10). ``problems`` lists the skipped tokens in
    order. ``tag_lines`` are the trailing lines that were recognised as tag lines, top to bottom.
    """

    body: str
    scores: Mapping[str, float] = field(default_factory=dict)
    problems: tuple[TagProblem, ...] = ()
    tag_lines: tuple[str, ...] = ()

    @property
    def unreadable_names(self) -> frozenset[str]:
        """Tag names present in a tag line whose score could not be used: their score for this node is unknown."""
        return frozenset(problem.name for problem in self.problems if problem.name is not None)


def _looks_like_tag(token: str) -> bool:
    match = _TOKEN_SHAPE.match(token)
    if match is None:
        return False
    name, score = match.groups()
    return bool(_NAME.match(name) and _LETTER.search(name) and _NUMBER.match(score))


def is_tag_line(line: str) -> bool:
    """Whether ``line`` is a tag line: only ``name:score``-shaped tokens, at least one of them a plausible tag."""
    tokens = line.split()
    if not tokens or not all(_TOKEN_SHAPE.match(token) for token in tokens):
        return False
    return any(_looks_like_tag(token) for token in tokens)


def _check_token(token: str) -> tuple[str, float] | TagProblem:
    """One token of a tag line -> ``(name, score)``, or the problem that makes it unusable."""
    raw_name, raw_score = token.split(":")
    name = normalize_name(raw_name) if _NAME.match(raw_name) and _LETTER.search(raw_name) else None
    if not raw_name:
        return TagProblem(token, None, "missing tag name before ':'")
    if name is None:
        return TagProblem(token, None, f"tag name {raw_name!r} must be letters, digits, '_' or '-' with a letter")
    if not raw_score:
        return TagProblem(token, name, "missing score after ':'")
    if not _NUMBER.match(raw_score):
        return TagProblem(token, name, f"score {raw_score!r} is not a number")
    score = float(raw_score)
    if not MIN_SCORE <= score <= MAX_SCORE:
        return TagProblem(token, name, f"score {raw_score} is outside 0-10")
    return name, score + 0.0  # -0 -> 0


def _parse_tokens(tokens: list[str]) -> tuple[dict[str, float], tuple[TagProblem, ...]]:
    scores: dict[str, float] = {}
    problems: list[TagProblem] = []
    written: dict[str, list[str]] = {}
    for token in tokens:
        checked = _check_token(token)
        if isinstance(checked, TagProblem):
            problems.append(checked)
            continue
        name, score = checked
        written.setdefault(name, []).append(token)
        if scores.setdefault(name, score) != score:
            scores[name] = math.nan  # conflicting scores: removed below
    for name in [name for name, score in scores.items() if math.isnan(score)]:
        del scores[name]
        problems.append(TagProblem(" ".join(written[name]), name, "tag given twice with different scores"))
    return scores, tuple(problems)


def parse_tag_line(line: str) -> tuple[dict[str, float], tuple[TagProblem, ...]]:
    """Parse one tag line into ``{name: score}`` and its problems; a name given twice with two scores is dropped."""
    return _parse_tokens(line.split())


def parse_content(content: str) -> ParsedContent:
    """Split a node's content into body and merged trailing tag lines (blank lines between them are allowed)."""
    lines = content.split("\n")  # only newlines: the body must stay a verbatim slice of the content
    cut = len(lines)
    while cut > 0 and (not lines[cut - 1].strip() or is_tag_line(lines[cut - 1])):
        cut -= 1
    tag_lines = tuple(line.strip() for line in lines[cut:] if line.strip())
    scores, problems = _parse_tokens([token for line in tag_lines for token in line.split()])
    return ParsedContent("\n".join(lines[:cut]).strip(), scores, problems, tag_lines)


def format_score(score: float) -> str:
    """A score as written in a tag line: ``9``, ``7.5``, never an exponent (``0.00001``)."""
    if score.is_integer():
        return str(int(score))
    return format(Decimal(repr(score)), "f")


def format_tag_line(scores: Mapping[str, float]) -> str:
    """Write ``{name: score}`` as one tag line (in the given order); raises ``TagError`` for unwritable tags."""
    bad = [f"{name}:{score!r}" for name, score in scores.items()
           if not (_NAME.match(name) and _LETTER.search(name)) or not math.isfinite(score)
           or not MIN_SCORE <= score <= MAX_SCORE]
    if bad:
        raise TagError(f"cannot write tag(s) {', '.join(bad)}: names need a letter and only letters, digits, "
                       f"'_' or '-'; scores must be within 0-10")
    return " ".join(f"{normalize_name(name)}:{format_score(float(score))}" for name, score in scores.items())


def format_content(body: str, scores: Mapping[str, float]) -> str:
    """A node's content: the body, then one tag line (none when ``scores`` is empty)."""
    if not scores:
        return body
    return f"{body}\n{format_tag_line(scores)}" if body else format_tag_line(scores)


__all__ = [
    "MAX_SCORE",
    "MIN_SCORE",
    "ParsedContent",
    "TagError",
    "TagProblem",
    "format_content",
    "format_score",
    "format_tag_line",
    "is_tag_line",
    "parse_content",
    "parse_tag_line",
]
