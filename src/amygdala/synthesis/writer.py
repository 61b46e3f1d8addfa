"""The writer: any OpenAI-compatible ``/v1/chat/completions`` endpoint (vLLM, ``amygdala serve``, a hosted API),
asked with bounded concurrency, retried with backoff, and journalled reply by reply.

- A connection failure, a timeout, a 429 or a 5xx is retried ``retries`` times, waiting ``backoff * 2**try``
  seconds (at most 30; a 429's or 503's ``Retry-After`` when it says longer), plus a little jitter.
- A malformed answer (not JSON, no ``choices[0].message.content`` string) is retried the same way, since a
  proxy or an overloaded server can send one now and then.
- A 401/403 or another 4xx is the caller's mistake: the run stops at once.

The first request that fails for good stops the run: requests not started are cancelled, those in flight are
awaited and journalled, and one ``SynthesisError`` names the endpoint, the cause and the fix. Everything
finished before stays in the journal for the rerun.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import httpx
from tqdm import tqdm

from amygdala.synthesis.journal import Journal, Reply
from amygdala.synthesis.prompts import Request, SynthesisError

_MAX_WAIT_S = 30.0


@dataclass(frozen=True)
class Endpoint:
    """Where and how to ask: ``base_url`` up to ``/v1`` (``http://host:8000`` or ``http://host:8000/v1``)."""

    base_url: str
    model: str
    api_key: str | None = None
    max_tokens: int = 320
    temperature: float = 0.9
    timeout: float = 300.0
    retries: int = 4
    backoff: float = 1.0

    @property
    def url(self) -> str:
        base = self.base_url.rstrip("/")
        return (base if base.endswith("/v1") else base + "/v1") + "/chat/completions"

    def problems(self) -> list[str]:
        problems = []
        if not self.base_url.startswith(("http://", "https://")):
            problems.append(f"--base-url {self.base_url!r} must start with http:// or https://")
        if self.max_tokens < 1:
            problems.append(f"--max-tokens {self.max_tokens} must be >= 1")
        if not 0 <= self.temperature <= 2:
            problems.append(f"--temperature {self.temperature} must be in 0..2")
        if self.retries < 0:
            problems.append(f"--retries {self.retries} must be >= 0")
        return problems


class _Retry(Exception):
    """A failure worth another try; ``wait`` is the server's Retry-After, if it gave one."""

    def __init__(self, message: str, wait: float | None = None) -> None:
        super().__init__(message)
        self.wait = wait


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
        error = body.get("error", body) if isinstance(body, dict) else body
        message = error.get("message", error) if isinstance(error, dict) else error
    except ValueError:
        message = response.text
    return " ".join(str(message).split())[:200] or response.reason_phrase


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers.get("retry-after", ""))
    except ValueError:
        return None


def _parse(response: httpx.Response) -> tuple[str, str | None, int, int]:
    """(text, finish_reason, prompt tokens, completion tokens) of a 200 answer; ``_Retry`` if malformed."""
    try:
        body: Any = response.json()
        choice = body["choices"][0]
        text = choice["message"]["content"]
        if not isinstance(text, str):
            raise TypeError("content is not a string")
        usage = body.get("usage") or {}
        return (text, choice.get("finish_reason"), int(usage.get("prompt_tokens", 0)),
                int(usage.get("completion_tokens", 0)))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        shown = " ".join(response.text.split())[:80] or "an empty body"
        raise _Retry(f"a malformed response ({type(exc).__name__}: {exc}; body: {shown!r})") from None


def _ask_once(client: httpx.Client, endpoint: Endpoint, request: Request) -> tuple[str, str | None, int, int]:
    body = {"model": endpoint.model, "messages": [{"role": "user", "content": request.message}],
            "max_tokens": endpoint.max_tokens, "temperature": endpoint.temperature, "seed": request.seed,
            "stream": False}
    try:
        response = client.post(endpoint.url, json=body)
    except (httpx.TransportError, httpx.TimeoutException) as exc:
        raise _Retry(f"cannot reach it ({type(exc).__name__}: {exc or 'no detail'})") from None
    if response.status_code in (401, 403):
        raise SynthesisError(f"{endpoint.url} refused the request ({response.status_code}: "
                             f"{_error_message(response)}): check --api-key")
    if response.status_code == 429 or response.status_code >= 500:
        raise _Retry(f"{response.status_code}: {_error_message(response)}", _retry_after(response))
    if response.status_code >= 400:
        raise SynthesisError(f"{endpoint.url} refused the request ({response.status_code}: "
                             f"{_error_message(response)}): check --model and --max-tokens")
    return _parse(response)


def ask(client: httpx.Client, endpoint: Endpoint, request: Request, stop: threading.Event) -> Reply:
    """One request, retried on transient failures; ``SynthesisError`` when it fails for good."""
    start = time.perf_counter()
    for attempt in range(endpoint.retries + 1):
        try:
            return Reply.of(request, *_ask_once(client, endpoint, request), time.perf_counter() - start)
        except _Retry as failure:
            if attempt == endpoint.retries or stop.is_set():
                raise SynthesisError(f"{endpoint.url}: {failure} after {attempt + 1} tries: check --base-url "
                                     "and that the server is up") from None
            delay = min(_MAX_WAIT_S, max(endpoint.backoff * 2 ** attempt, failure.wait or 0.0))
            stop.wait(delay * (1 + 0.1 * random.random()))
    raise AssertionError("unreachable")


def run_requests(endpoint: Endpoint, requests: Sequence[Request], journal: Journal, *, concurrency: int,
                 progress: bool = False, on_reply: Callable[[Reply], None] | None = None) -> list[Reply]:
    """Ask every request (at most ``concurrency`` at a time), journalling each reply as it arrives; the replies
    in finishing order. The first lasting failure cancels what has not started and is raised once the requests
    in flight have finished (and been journalled)."""
    headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
    stop, replies, failure = threading.Event(), [], None
    bar = tqdm(total=len(requests), unit="story", desc="synthesizing", disable=None if progress else True)
    tokens = 0
    with httpx.Client(headers=headers, timeout=endpoint.timeout) as client, \
            ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="amygdala-synth") as pool:
        pending: set[Future[Reply]] = {pool.submit(ask, client, endpoint, r, stop) for r in requests}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    if future.cancelled():
                        continue
                    try:
                        reply = future.result()
                    except SynthesisError as exc:
                        failure = failure or exc
                        stop.set()
                        for other in pending:
                            other.cancel()
                        continue
                    journal.append(reply)
                    replies.append(reply)
                    tokens += reply.completion_tokens
                    bar.update(1)
                    bar.set_postfix(tokens=tokens, refresh=False)
                    if on_reply is not None:
                        on_reply(reply)
        except BaseException:
            stop.set()
            for other in pending:
                other.cancel()
            raise
        finally:
            bar.close()
    if failure is not None:
        raise failure
    return replies


__all__ = ["Endpoint", "ask", "run_requests"]
