"""A live server as a source of watch events: ``GET /v1/readout/manifest``, then one streamed request per turn.

Works with any server that speaks amygdala's contract (``amygdala serve``, or vLLM with amygdala-vllm). Nothing
here raises for what the server or the network does: an unreachable server, a 404 manifest, an HTTP error, a cut
stream or a malformed chunk each become a ``Notice``, and the session goes on. A lost stream (or an unreachable
server, or a 5xx) is retried with backoff only when ``retries`` asks for it; a retried turn starts over.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from amygdala.serve.client import SSE_DONE, ReadoutClient, ServerError, iter_sse_data, raise_for_error
from amygdala.watch.chunks import ChunkReader
from amygdala.watch.events import (
    Event,
    Manifest,
    Notice,
    Token,
    TurnEnd,
    TurnKind,
    TurnStart,
    WatchError,
    manifest_from_json,
)

MANIFEST_PATH = "/v1/readout/manifest"
_NO_READOUT = ("tokens will show uncoloured; start amygdala serve with --vectors, or vLLM with amygdala-vllm "
               "(VLLM_PLUGINS=amygdala_readout and VLLM_READOUT_VECTORS)")


@dataclass(frozen=True)
class LiveOptions:
    """Where the server is and what to ask it."""

    #: Base URL of the server (``/v1/...`` is appended).
    url: str = "http://127.0.0.1:8000"
    #: Sent as ``Authorization: Bearer <key>``.
    api_key: str | None = None
    #: ``chat`` (``/v1/chat/completions``), ``completion`` (``/v1/completions``), or None: chat, and completion
    #: once the server says the model has no chat template.
    mode: Literal["chat", "completion"] | None = None
    #: Model name sent with each request; None: the first one ``GET /v1/models`` lists.
    model: str | None = None
    max_tokens: int = 64
    temperature: float = 0.7
    #: Retries of a lost stream, an unreachable server or a 5xx, waiting 0.5 s, 1 s, 2 s ... (at most 8 s).
    retries: int = 0
    #: Seconds to wait for the server on each read.
    timeout: float = 60.0


@dataclass(frozen=True)
class _Outcome:
    """How one request went: its answer's text and finish reason, or the error that ended it."""

    text: str = ""
    finish_reason: str | None = None
    error: str | None = None
    retriable: bool = False
    no_chat_template: bool = False


def backoff(attempt: int) -> float:
    """Seconds before retry ``attempt`` (1-based)."""
    return min(8.0, 0.5 * 2 ** (attempt - 1))


def _transport_error(url: str, exc: httpx.TransportError, tokens: int) -> str:
    if isinstance(exc, httpx.ConnectError):
        return f"cannot reach {url}: {exc}"
    if isinstance(exc, httpx.TimeoutException):
        return f"{url} sent nothing for too long ({type(exc).__name__}) after {tokens} tokens"
    return f"the stream from {url} was cut after {tokens} tokens: {exc or type(exc).__name__}"


def _server_error(path: str, exc: ServerError) -> _Outcome:
    message = str(exc.error.get("message", exc.error))
    hint = ": pass the server's key with --api-key" if exc.status in (401, 403) else ""
    no_template = exc.status == 400 and (exc.error.get("code") == "no_chat_template" or "chat template" in message)
    return _Outcome(error=f"{path} answered {exc.status}: {message}{hint}",
                    retriable=exc.status >= 500 or exc.status == 429, no_chat_template=no_template)


class LiveSource:
    """One server; ``connect`` first, then ``turn`` per prompt. ``stop`` ends a stream or a backoff early."""

    def __init__(self, options: LiveOptions, *, stop: threading.Event | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.options, self.clock = options, clock
        self.stop = stop or threading.Event()
        self.client = ReadoutClient(options.url, api_key=options.api_key, timeout=options.timeout)
        self.manifest: Manifest | None = None
        self.model = options.model
        self.mode = options.mode
        self.messages: list[dict[str, str]] = []
        self.turns = 0

    def close(self) -> None:
        self.client.close()

    def connect(self) -> Iterator[Event]:
        """The manifest (or a notice saying why there is none), retried while the server is unreachable."""
        for attempt in range(self.options.retries + 1):
            if attempt and not (yield from self._wait(attempt)):
                return
            try:
                yield from self._read_manifest()
                self._read_model()
                return
            except httpx.TransportError as exc:
                yield Notice(_transport_error(self.options.url, exc, 0), "error")

    def _read_manifest(self) -> Iterator[Event]:
        try:
            manifest = manifest_from_json(self.client.manifest(), f"{self.options.url}{MANIFEST_PATH}")
        except ServerError as exc:
            if exc.status == 404:
                yield Notice(f"{self.options.url} serves no readout (404 on {MANIFEST_PATH}): {_NO_READOUT}", "error")
            else:
                yield Notice(_server_error(MANIFEST_PATH, exc).error or "", "error")
            return
        except WatchError as exc:  # JSON that is no manifest
            yield Notice(f"{exc}: {_NO_READOUT}", "error")
            return
        except ValueError:  # no JSON at all
            yield Notice(f"{MANIFEST_PATH} did not answer JSON: {_NO_READOUT}", "error")
            return
        self.manifest = manifest
        yield manifest

    def _read_model(self) -> None:
        if self.model is not None:
            return
        try:
            models = self.client.http.get("/v1/models").json().get("data") or []
            self.model = str(models[0]["id"]) if models else None
        except (httpx.HTTPError, ValueError, AttributeError, KeyError, TypeError, IndexError):
            self.model = None  # servers that list no model accept requests without one

    def turn(self, prompt: str) -> Iterator[Event]:
        """Stream one answer to ``prompt`` (a user turn in chat mode, a whole prompt in completion mode); always
        ends with ``TurnEnd`` (finish reason None when the answer was cut or refused)."""
        self.turns += 1
        outcome = yield from self._attempts(prompt)
        if outcome.error is None and (self.mode or "chat") == "chat":
            self.messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": outcome.text}]
        yield TurnEnd(self.turns, outcome.finish_reason, self.clock())

    def _attempts(self, prompt: str) -> Generator[Event, None, _Outcome]:
        attempt = 0
        while True:
            kind: TurnKind = self.mode or "chat"
            yield TurnStart(self.turns, prompt, kind, self.clock(), restart=attempt > 0)
            outcome = yield from self._attempt(kind, prompt)
            if outcome.no_chat_template and self.mode is None:
                self.mode = "completion"
                yield Notice("the model has no chat template: sending prompts to /v1/completions (--completion)")
                continue
            if outcome.error is None or self.stop.is_set():
                return outcome
            yield Notice(outcome.error, "error")
            attempt += 1
            if not outcome.retriable or attempt > self.options.retries or not (yield from self._wait(attempt)):
                return outcome

    def _wait(self, attempt: int) -> Generator[Event, None, bool]:
        delay = backoff(attempt)
        yield Notice(f"retrying in {delay:.1f} s ({attempt}/{self.options.retries})")
        return not self.stop.wait(delay)

    def _request(self, kind: TurnKind, prompt: str) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"max_tokens": self.options.max_tokens, "temperature": self.options.temperature,
                                "stream": True, "return_token_ids": True}
        if self.model is not None:
            body["model"] = self.model
        if kind == "completion":
            return "/v1/completions", body | {"prompt": prompt}
        return "/v1/chat/completions", body | {"messages": [*self.messages, {"role": "user", "content": prompt}]}

    def _attempt(self, kind: TurnKind, prompt: str) -> Generator[Event, None, _Outcome]:
        path, body = self._request(kind, prompt)
        reader = ChunkReader(self.turns, self.manifest, self.clock)
        text: list[str] = []
        try:
            with self.client.http.stream("POST", path, json=body) as response:
                raise_for_error(response)
                for data in iter_sse_data(response.iter_lines()):
                    if data == SSE_DONE or self.stop.is_set():
                        break
                    for event in reader.feed(data):
                        text.append(event.text if isinstance(event, Token) else "")
                        yield event
                else:
                    raise httpx.RemoteProtocolError("it ended without 'data: [DONE]'")
        except ServerError as exc:
            return _server_error(path, exc)
        except httpx.TransportError as exc:
            yield from reader.finish()
            return _Outcome(error=_transport_error(self.options.url, exc, reader.tokens), retriable=True)
        yield from reader.finish()
        return _Outcome("".join(text), reader.finish_reason, reader.error)
