"""Request bodies of the OpenAI-compatible endpoints, how a body is parsed, and the OpenAI-style error they answer with.

Types are strict, as in the OpenAI API: ``"max_tokens": "5"`` or ``true``, ``"stream": 1`` and
``"readout_zscore": "yes"`` are 400s, never coerced; floats must be finite. ``parse_request`` turns any body into
a request or one ``APIError`` (400) saying what is wrong and where: invalid JSON (line and column), text that is
not text (lone surrogates, not UTF-8), a field of the wrong type or out of range (its path as ``param``).

Unknown fields are accepted and ignored (clients send many), except the ones whose meaning amygdala does not
implement (``UNSUPPORTED``): those are refused unless left at their default, so nothing is silently dropped.
``model`` is accepted and not checked: a server serves one model, and every response names it.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from amygdala.readout.projection import MAX_STEER_ALPHA
from amygdala.web.payloads import error_body

#: Fields amygdala does not implement, with the value meaning "not used"; any other value is a 400.
UNSUPPORTED: dict[str, Any] = {
    "echo": False, "logprobs": None, "top_logprobs": None, "best_of": 1, "suffix": None, "logit_bias": None,
    "presence_penalty": 0, "frequency_penalty": 0, "tools": None, "functions": None, "response_format": None,
}
_STRICT = ConfigDict(strict=True, allow_inf_nan=False, extra="allow")
_MAX_PATH_PARTS = 6
Request = TypeVar("Request", bound=BaseModel)


class APIError(Exception):
    """An error answered as ``{"error": {"message", "type", "param", "code"}}`` with an HTTP status."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error", headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, kind=self.kind, param=self.param, code=self.code)


class StreamOptions(BaseModel):
    model_config = _STRICT

    include_usage: bool = False


class GenerationRequest(BaseModel):
    """Fields both endpoints share, plus amygdala's extras ``readout``, ``readout_zscore``, ``steer``."""

    model_config = _STRICT

    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    n: int = Field(default=1, ge=1)
    #: Any signed 64-bit integer (OpenAI's range); choice k of a request samples with seed + k.
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    #: Attach the readout (False: plain generation, e.g. to measure its cost).
    readout: bool = True
    #: Z-score readouts with the manifest calibration.
    readout_zscore: bool = False
    #: Concept -> alpha (finite, within +-``MAX_STEER_ALPHA``), added to (and overriding per concept) the server's
    #: ``--steer``.
    steer: dict[str, Annotated[float, Field(ge=-MAX_STEER_ALPHA, le=MAX_STEER_ALPHA)]] = Field(default_factory=dict)
    #: Layers that steer (a subset of the artifact's); None: the server's choice (every hooked layer by default).
    steer_layers: list[int] | None = None

    def unsupported(self) -> list[str]:
        extra = self.model_extra or {}
        return [name for name, default in UNSUPPORTED.items() if name in extra and extra[name] != default]


class CompletionRequest(GenerationRequest):
    prompt: str | list[int] | list[str]


class ChatMessage(BaseModel):
    model_config = _STRICT

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


def _invalid(message: str, param: str | None = None) -> APIError:
    return APIError(400, message, param=param, code="invalid_value")


def _decode(raw: bytes) -> Any:
    """The body's JSON value; invalid JSON is one 400 saying what is wrong and where."""
    if not raw.strip():
        raise _invalid("the request body is empty: send a JSON object")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise _invalid(f"the request body is not UTF-8 (byte {exc.start}): send UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise _invalid(f"the request body is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno} "
                       f"(character {exc.pos})") from None
    except RecursionError:
        raise _invalid("the request body is nested too deeply to parse") from None
    except ValueError:  # an integer with more digits than Python converts (4300)
        raise _invalid("the request body holds a number too long to read (over 4300 digits)") from None


def _lone_surrogate(value: Any, path: tuple[str | int, ...] = ()) -> tuple[tuple[str | int, ...], str] | None:
    """The path and text of the first string (key or value) holding a lone surrogate such as ``\\ud800``."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return path, value[exc.start:exc.end]
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        if found := _lone_surrogate(key, path) or _lone_surrogate(item, (*path, key)):
            return found
    return None


def _is_branch(part: str | int) -> bool:
    """Whether a pydantic location part names a union branch (``str``, ``list[int]``...) rather than a field."""
    return isinstance(part, str) and ("[" in part or part in ("str", "int", "float", "bool", "none", "dict", "list"))


def _dotted(location: tuple[str | int, ...]) -> str | None:
    """``("messages", 0, "content")`` -> ``"messages.0.content"``, leaving out union branch names."""
    return ".".join(str(part) for part in location if not _is_branch(part))[:120] or None


def _got(error: Any) -> str:
    return "" if error.get("type") == "missing" else f" (got {json.dumps(error.get('input'), default=str)[:40]})"


def _validation_message(exc: ValidationError) -> APIError:
    """Every field pydantic refused, once each, the first one as ``param``. A value that fits no branch of a
    union (``prompt``: a string, token ids or strings) is one message listing the branches."""
    errors = exc.errors(include_url=False)
    described: dict[str | None, str] = {}
    for error in errors:
        location = tuple(error.get("loc", ()))
        branch = next((index for index, part in enumerate(location) if _is_branch(part)), None)
        if branch is None:
            path = _dotted(location)
            described.setdefault(path, f"{path or 'body'}: {error.get('msg', 'invalid')}{_got(error)}")
            continue
        prefix, path = location[:branch], _dotted(location[:branch])
        group = [e for e in errors if tuple(e.get("loc", ()))[:branch] == prefix and len(e.get("loc", ())) > branch]
        whole = next((e for e in group if len(e["loc"]) == branch + 1), error)  # the one that saw the field's value
        branches = ", ".join(dict.fromkeys(str(e["loc"][branch]) for e in group))
        described.setdefault(path, f"{path or 'body'}: should be one of {branches}{_got(whole)}")
    return _invalid("; ".join(described.values()), next(iter(described)))


def parse_request(raw: bytes, model: type[Request]) -> Request:
    """A request body -> ``model``, or one ``APIError`` (400) naming what is wrong and where."""
    data = _decode(raw)
    if found := _lone_surrogate(data):
        path, text = found
        where = _dotted(path) or "body"
        raise _invalid(f"{where}: {text.encode('unicode_escape').decode()} is a lone surrogate, not a character: "
                       f"send valid UTF-8 text", where)
    if not isinstance(data, dict):
        kind = {"list": "an array", "str": "a string", "bool": "a boolean", "NoneType": "null"}.get(
            type(data).__name__, "a number")
        raise _invalid(f"the request body must be a JSON object, not {kind}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _validation_message(exc) from None
