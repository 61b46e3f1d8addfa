"""Request bodies of the OpenAI-compatible endpoints, and the OpenAI-style error they answer with.

Unknown fields are accepted and ignored (clients send many), except the ones whose meaning amygdala does not
implement (``UNSUPPORTED``): those are refused unless left at their default, so nothing is silently dropped.
``model`` is accepted and not checked: a server serves one model, and every response names it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: Fields amygdala does not implement, with the value meaning "not used"; any other value is a 400.
UNSUPPORTED: dict[str, Any] = {
    "echo": False, "logprobs": None, "top_logprobs": None, "best_of": 1, "suffix": None, "logit_bias": None,
    "presence_penalty": 0, "frequency_penalty": 0, "tools": None, "functions": None, "response_format": None,
}


class APIError(Exception):
    """An error answered as ``{"error": {"message", "type", "param", "code"}}`` with an HTTP status."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


class StreamOptions(BaseModel):
    include_usage: bool = False


class GenerationRequest(BaseModel):
    """Fields both endpoints share, plus amygdala's extras ``readout``, ``readout_zscore``, ``steer``."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    n: int = Field(default=1, ge=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    #: Attach the readout (False: plain generation, e.g. to measure its cost).
    readout: bool = True
    #: Z-score readouts with the manifest calibration.
    readout_zscore: bool = False
    #: Concept -> alpha, added to (and overriding per concept) the server's ``--steer``.
    steer: dict[str, float] = Field(default_factory=dict)
    #: Layers that steer (a subset of the artifact's); None: the server's choice (every hooked layer by default).
    steer_layers: list[int] | None = None

    def unsupported(self) -> list[str]:
        extra = self.model_extra or {}
        return [name for name, default in UNSUPPORTED.items() if name in extra and extra[name] != default]


class CompletionRequest(GenerationRequest):
    prompt: str | list[int] | list[str]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        """The content as text: a string, or the ``text`` of each ``{"type": "text"}`` part."""
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        return "".join(str(part.get("text", "")) for part in self.content if part.get("type") == "text")


class ChatCompletionRequest(GenerationRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
