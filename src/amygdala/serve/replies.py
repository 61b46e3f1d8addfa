"""The OpenAI JSON of responses: stream chunks and whole responses (``Reply``), encoded as strict JSON.

Every chunk of a stream carries exactly one generated token: its text delta (possibly ``""`` while a stop string
may be forming), ``token_id`` and ``readout`` (``[n_layers][n_concepts]``, from the forward pass that sampled it).
A non-streaming choice carries ``token_ids`` and ``readout`` (one ``[n_layers][n_concepts]`` per token).
Encoded with ``web.payloads.strict_json`` / ``sse_line`` (re-exported here): a non-finite readout value (e.g. an
fp16 overflow, or a z-score over a tiny std) is sent as ``null``, never as the invalid ``NaN``/``Infinity``.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from amygdala.readout.generation import GenerationStep
from amygdala.web.payloads import sse_line, strict_json

Kind = Literal["completion", "chat"]


class Reply:
    """Builds the OpenAI JSON of one request: stream chunks or the whole response."""

    def __init__(self, kind: Kind, model: str, prompt_tokens: int) -> None:
        self.kind, self.model, self.prompt_tokens = kind, model, prompt_tokens
        self.id = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.started: set[int] = set()

    def envelope(self, choices: list[dict[str, Any]], suffix: str) -> dict[str, Any]:
        obj = "chat.completion" if self.kind == "chat" else "text_completion"
        return {"id": self.id, "object": obj + suffix, "created": self.created, "model": self.model,
                "choices": choices}

    def chunk(self, index: int, step: GenerationStep) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": index, "finish_reason": step.finish_reason, "token_id": step.token_id}
        if self.kind == "chat":
            choice["delta"] = {"content": step.text} if index in self.started else {"role": "assistant",
                                                                                     "content": step.text}
        else:
            choice |= {"text": step.text, "logprobs": None}
        self.started.add(index)
        if step.readout is not None:
            choice["readout"] = step.readout.tolist()
        return self.envelope([choice], ".chunk" if self.kind == "chat" else "")

    def usage(self, completion_tokens: int) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": completion_tokens,
                "total_tokens": self.prompt_tokens + completion_tokens}

    def response(self, results: list[list[GenerationStep]]) -> dict[str, Any]:
        choices = []
        for index, steps in enumerate(results):
            text = "".join(step.text for step in steps)
            choice: dict[str, Any] = {"index": index, "finish_reason": steps[-1].finish_reason if steps else None,
                                      "token_ids": [step.token_id for step in steps]}
            choice |= {"message": {"role": "assistant", "content": text}} if self.kind == "chat" else {
                "text": text, "logprobs": None}
            if steps and steps[0].readout is not None:
                choice["readout"] = [step.readout.tolist() for step in steps if step.readout is not None]
            choices.append(choice)
        body = self.envelope(choices, "")
        body["usage"] = self.usage(sum(len(steps) for steps in results))
        return body


__all__ = ["Kind", "Reply", "sse_line", "strict_json"]
