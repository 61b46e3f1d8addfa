"""A tiny client for ``amygdala serve``: completions with per-token readouts, streamed or whole.

Needs only httpx (no torch, no transformers), so it runs wherever the server is reachable::

    from amygdala.serve.client import ReadoutClient
    client = ReadoutClient("http://127.0.0.1:8000", api_key=None)
    for chunk in client.stream_completion("Today I feel", max_tokens=8, temperature=0):
        print(chunk.text, chunk.readout)       # readout[layer][concept] of this token
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

#: The last ``data:`` payload of every stream; a stream that ends without it was cut.
SSE_DONE = "[DONE]"

class ServerError(Exception):
    """The server answered with an OpenAI-style error body (or a non-JSON failure)."""

    def __init__(self, status: int, error: dict[str, Any]) -> None:
        super().__init__(f"{status}: {error.get('message', error)}")
        self.status, self.error = status, error


@dataclass(frozen=True)
class TokenChunk:
    """One streamed token of one choice."""

    index: int
    text: str
    token_id: int
    readout: list[list[float]] | None
    finish_reason: str | None


def raise_for_error(response: httpx.Response) -> None:
    """A ServerError for a 4xx/5xx answer: its OpenAI-style ``error`` object, else the body as the message."""
    if response.status_code < 400:
        return
    response.read()
    try:
        body = response.json()
    except json.JSONDecodeError:
        body = None
    error = body.get("error", body) if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {"message": error if isinstance(error, str) else response.text}
    raise ServerError(response.status_code, error)


class ReadoutClient:
    """Talks to one server; ``timeout`` is per read, in seconds."""

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout: float = 120.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ReadoutClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def manifest(self) -> dict[str, Any]:
        """``{"concepts": [...], "layers": [...], ...}``; ServerError 404 when the server has no vectors."""
        response = self.http.get("/v1/readout/manifest")
        raise_for_error(response)
        return response.json()

    def complete(self, prompt: str | list[int], **params: Any) -> dict[str, Any]:
        """A non-streaming ``/v1/completions`` response (``choices[i].readout`` per generated token)."""
        return self.post("/v1/completions", {"prompt": prompt, **params, "stream": False})

    def chat(self, messages: list[dict[str, Any]], **params: Any) -> dict[str, Any]:
        return self.post("/v1/chat/completions", {"messages": messages, **params, "stream": False})

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post(path, json=body)
        raise_for_error(response)
        return response.json()

    def stream_completion(self, prompt: str | list[int], **params: Any) -> Iterator[TokenChunk]:
        yield from self.stream("/v1/completions", {"prompt": prompt, **params})

    def stream_chat(self, messages: list[dict[str, Any]], **params: Any) -> Iterator[TokenChunk]:
        yield from self.stream("/v1/chat/completions", {"messages": messages, **params})

    def stream(self, path: str, body: dict[str, Any]) -> Iterator[TokenChunk]:
        """Yield each token chunk of an SSE stream until ``[DONE]``; an error event raises ServerError.
        Leaving the loop early closes the connection, which cancels the generation on the server."""
        with self.http.stream("POST", path, json={**body, "stream": True}) as response:
            raise_for_error(response)
            for event in iter_sse(response.iter_lines()):
                if "error" in event:
                    raise ServerError(500, event["error"])
                for choice in event.get("choices", []):
                    text = choice.get("text", choice.get("delta", {}).get("content", ""))
                    yield TokenChunk(choice["index"], text or "", choice["token_id"], choice.get("readout"),
                                     choice.get("finish_reason"))


def iter_sse(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """The JSON payloads of ``data:`` lines, stopping at ``data: [DONE]``."""
    for data in iter_sse_data(lines):
        if data == SSE_DONE:
            return
        yield json.loads(data)


def iter_sse_data(lines: Iterator[str]) -> Iterator[str]:
    """The text of every ``data:`` line, ``[DONE]`` included: a reader that must survive a malformed payload, or
    tell a finished stream from a cut one, decodes and stops itself."""
    for line in lines:
        if line.startswith("data:"):
            yield line[len("data:"):].strip()
