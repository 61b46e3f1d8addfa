"""The crash-safe record of finished requests: one JSON line per reply, appended and fsynced before the next.

A ``kill -9`` can only cut the line being written: ``Journal.open`` drops such a torn tail (and any line that is
not a reply), so a rerun asks again exactly for the requests without a line. A line answers a request only when
its key (kind, emotion, topic, index) and fingerprint both match (``prompts.Request``), so changed prompts, model
or sampling are asked anew, never mixed in; the first line of a key wins, so the journal never yields
duplicates.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from amygdala.outputs.atomic import output_error
from amygdala.synthesis.prompts import Kind, Request


@dataclass(frozen=True)
class Reply:
    """A finished request: the text, why generation stopped, the token counts and the seconds it took."""

    kind: Kind
    emotion: str | None
    topic: str
    index: int
    fingerprint: str
    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    seconds: float

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.kind, self.emotion or "", self.topic, self.index)

    @classmethod
    def of(cls, request: Request, text: str, finish_reason: str | None, prompt_tokens: int,
           completion_tokens: int, seconds: float) -> Reply:
        return cls(request.kind, request.emotion, request.topic, request.index, request.fingerprint, text,
                   finish_reason, prompt_tokens, completion_tokens, seconds)


def _parse(line: str) -> Reply | None:
    try:
        row: Any = json.loads(line)
        reply = Reply(**row)
    except (ValueError, TypeError):
        return None
    return reply if isinstance(reply.text, str) and reply.kind in ("story", "neutral") else None


class Journal:
    """An append-only JSONL file of ``Reply`` lines; ``replies`` maps each (key, fingerprint) to its first reply."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.replies: dict[tuple[tuple[str, str, str, int], str], Reply] = {}
        self.n_unreadable = 0
        self._handle: IO[bytes] | None = None

    def open(self) -> Journal:
        """Read what a previous run finished, cut a torn last line, and open for appending."""
        try:
            data = self.path.read_bytes() if self.path.exists() else b""
            whole = data[: data.rfind(b"\n") + 1]
            for line in whole.decode("utf-8", errors="replace").splitlines():
                reply = _parse(line) if line.strip() else None
                if reply is None:
                    self.n_unreadable += bool(line.strip())
                else:
                    self.replies.setdefault((reply.key, reply.fingerprint), reply)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = self.path.open("ab")
            if len(whole) < len(data):
                self._handle.truncate(len(whole))
        except OSError as exc:
            raise output_error(self.path, exc) from exc
        return self

    def reply_to(self, request: Request) -> Reply | None:
        """The reply journalled for exactly this request (key and fingerprint), if any."""
        return self.replies.get((request.key, request.fingerprint))

    def append(self, reply: Reply) -> None:
        """Write one line and fsync it: once this returns, the reply survives a crash."""
        assert self._handle is not None, "open the journal first"
        self._handle.write((json.dumps(asdict(reply), ensure_ascii=False) + "\n").encode("utf-8"))
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.replies.setdefault((reply.key, reply.fingerprint), reply)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> Journal:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Journal", "Reply"]
