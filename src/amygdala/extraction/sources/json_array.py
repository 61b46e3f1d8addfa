"""The elements of a JSON array file (``[{...}, {...}]``), parsed one at a time from text chunks.

Only the text of the element being parsed is held, so an array file is read in about the memory of its largest
element. Each element comes with where it starts (``line N (element I)``), for messages.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

_DECODER = json.JSONDecoder()
_WHITESPACE = " \t\n\r"


class _SyntaxProblem(ValueError):
    """The text is no JSON array (reported, then the reading stops); other errors, like a ``SourceError`` for
    bytes that are not UTF-8, pass through."""


class _ArrayText:
    """A window on the text: ``text[pos:]`` is what is not yet parsed; ``line`` is the line number at ``pos``."""

    def __init__(self, chunks: Iterator[str]) -> None:
        self.chunks = chunks
        self.text = ""
        self.pos = 0
        self.line = 1
        self.done = False

    def more(self, at_least: int = 0) -> bool:
        """Append chunks (at least ``at_least`` characters when there are that many); False at the end of the file."""
        if self.pos:  # drop the parsed prefix so the window stays small
            self.text, self.pos = self.text[self.pos:], 0
        parts, added = [self.text], 0
        while not self.done and (added == 0 or added < at_least):
            chunk = next(self.chunks, None)
            if chunk is None:
                self.done = True
                break
            parts.append(chunk)
            added += len(chunk)
        self.text = "".join(parts)
        return added > 0

    def advance(self, end: int) -> None:
        self.line += self.text.count("\n", self.pos, end)
        self.pos = end

    def next_char(self) -> str | None:
        """The next character that is not whitespace (the position moves to it); ``None`` at the end of the file."""
        while True:
            end = self.pos
            while end < len(self.text) and self.text[end] in _WHITESPACE:
                end += 1
            self.advance(end)
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self.more():
                return None

    def value(self) -> object:
        """Parse the JSON value at the position; raises ``ValueError`` naming its line when it is invalid."""
        while True:
            try:
                value, end = _DECODER.raw_decode(self.text, self.pos)
                if end < len(self.text) or self.done:  # a value ending the window may go on in the next chunk
                    self.advance(end)
                    return value
            except json.JSONDecodeError as exc:
                if self.done:
                    line = self.line + self.text.count("\n", self.pos, exc.pos)
                    raise _SyntaxProblem(f"line {line}: invalid JSON ({exc.msg})") from None
            except RecursionError:
                raise _SyntaxProblem(f"line {self.line}: invalid JSON (nested too deeply)") from None
            self.more(at_least=len(self.text) - self.pos)  # doubles the window: long values parse in few tries


def read_array_rows(chunks: Iterator[str], report: Callable[[str], None]) -> Iterator[tuple[str, object]]:
    """``(where, element)`` for each element of the array; a syntax error is reported and ends the reading."""
    text = _ArrayText(chunks)
    try:
        yield from _elements(text)
    except _SyntaxProblem as exc:
        report(str(exc))


def _elements(text: _ArrayText) -> Iterator[tuple[str, object]]:
    if text.next_char() != "[":
        raise _SyntaxProblem(f"line {text.line}: expected '[' to start a JSON array")
    text.advance(text.pos + 1)
    index = 0
    if text.next_char() == "]":
        text.advance(text.pos + 1)
    else:
        while True:
            index += 1
            text.next_char()
            line = text.line
            yield f"line {line} (element {index})", text.value()
            separator = text.next_char()
            if separator is None:
                raise _SyntaxProblem(f"line {text.line}: the JSON array is not closed with ']'")
            text.advance(text.pos + 1)
            if separator == "]":
                break
            if separator != ",":
                raise _SyntaxProblem(f"line {text.line}: expected ',' or ']' after element {index} of the array")
    if text.next_char() is not None:
        raise _SyntaxProblem(f"line {text.line}: unexpected text after the end of the JSON array")


__all__ = ["read_array_rows"]
