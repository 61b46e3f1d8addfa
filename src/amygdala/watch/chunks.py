"""One stream's ``data:`` payloads -> token events, for choice 0, tolerating what cannot be used.

Both servers send one token per chunk with its ``choices[0].readout``; amygdala serve names it ``token_id``,
vLLM (asked for ``return_token_ids``) ``token_ids``. When vLLM merges several tokens into one chunk, the plugin
sends one text-less chunk per extra token first, carrying that token's readout: those are held until the
merged chunk names their ids. A malformed chunk or readout becomes a notice; the stream goes on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from amygdala.watch.events import Event, Manifest, Notice, Readout, Token, readout_from_json


def _token_ids(choice: dict[str, Any]) -> list[int]:
    single, many = choice.get("token_id"), choice.get("token_ids")
    if isinstance(single, int) and not isinstance(single, bool):
        return [single]
    if isinstance(many, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in many):
        return list(many)
    return []


def _text(choice: dict[str, Any]) -> object:
    if "text" in choice:
        return choice["text"]
    delta = choice.get("delta")
    return delta.get("content") if isinstance(delta, dict) else None


class ChunkReader:
    """Reads the chunks of one request (turn ``turn``) against ``manifest`` (None: the server has no readout)."""

    def __init__(self, turn: int, manifest: Manifest | None, clock: Callable[[], float]) -> None:
        self.turn, self.manifest, self.clock = turn, manifest, clock
        self.chunks = 0
        self.tokens = 0
        self.missing = 0
        self.finish_reason: str | None = None
        #: The server's error event, as a sentence, if one ended the stream.
        self.error: str | None = None
        self._held: list[Readout | None] = []

    def feed(self, data: str) -> list[Event]:
        """The events of one ``data:`` payload (``[DONE]`` excluded)."""
        self.chunks += 1
        try:
            payload = json.loads(data)
        except (json.JSONDecodeError, RecursionError):
            return [Notice(f"skipped chunk {self.chunks}: not JSON ({data[:40]!r})", "warning")]
        if isinstance(payload, dict) and "error" in payload:
            error = payload["error"]  # reported by the caller, once the stream has ended
            message = error.get("message", error) if isinstance(error, dict) else error
            self.error = f"the server ended the answer with an error: {message}"
            return []
        choices = payload.get("choices", []) if isinstance(payload, dict) else None
        if not isinstance(choices, list):
            return [Notice(f"skipped chunk {self.chunks}: no 'choices' list", "warning")]
        events: list[Event] = []
        for choice in choices:
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                events += self._choice(choice)
        return events

    def finish(self) -> list[Event]:
        """Tokens still held when the stream ends (their ids never came)."""
        return self._release([])

    def _choice(self, choice: dict[str, Any]) -> list[Event]:
        text, ids, raw = _text(choice), _token_ids(choice), choice.get("readout")
        if isinstance(choice.get("finish_reason"), str):
            self.finish_reason = choice["finish_reason"]
        if text is None:
            text = ""
        if not isinstance(text, str):
            return [Notice(f"skipped chunk {self.chunks}: its text is not a string", "warning")]
        events: list[Event] = []
        readout = None
        if raw is not None and self.manifest is not None:
            readout = readout_from_json(raw, self.manifest)
            if readout is None:
                shape = f"[{len(self.manifest.layers)}][{len(self.manifest.concepts)}]"
                events.append(Notice(f"chunk {self.chunks}: its readout is not {shape} numbers; token shown "
                                     "uncoloured", "warning"))
        if not text and not ids:
            if raw is not None:  # vLLM: an extra token of a merged chunk; its id comes with that chunk
                self._held.append(readout)
            return events
        return events + self._release(ids[:-1]) + self._token(text, ids[-1] if ids else None, readout, raw)

    def _release(self, ids: list[int]) -> list[Event]:
        """The held tokens, given ``ids`` when they are exactly as many."""
        held, self._held = self._held, []
        named: list[int | None] = list(ids) if len(ids) == len(held) else [None] * len(held)
        # raw=True: each held token did carry a readout (a malformed one was reported when it came)
        return [event for token_id, readout in zip(named, held) for event in self._token("", token_id, readout, True)]

    def _token(self, text: str, token_id: int | None, readout: Readout | None, raw: object) -> list[Event]:
        """The token, after a notice the first time one comes without a readout from a server that has them."""
        self.tokens += 1
        token = Token(self.turn, text, token_id, readout, self.clock())
        if raw is not None or self.manifest is None:
            return [token]
        self.missing += 1
        if self.missing > 1:
            return [token]
        return [Notice(f"token {text!r} came without a readout; such tokens show uncoloured", "warning"), token]
