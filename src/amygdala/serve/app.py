"""The OpenAI-compatible web layer: routes, auth, SSE streaming, OpenAI-style errors. Transport only: generation
and readout happen in ``Engine`` (one worker thread) through ``amygdala.generation`` and ``amygdala.readout``.

Every chunk of a stream carries exactly one generated token: its text delta (possibly ``""`` while a stop string
may be forming), ``token_id`` and ``readout`` (``[n_layers][n_concepts]``, from the forward pass that sampled it).
A non-streaming choice carries ``token_ids`` and ``readout`` (one ``[n_layers][n_concepts]`` per token).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from amygdala.artifact import calibration_json
from amygdala.generation import GenerationStep
from amygdala.serve.engine import Emit, Engine, GenerationJob, ServeOptions
from amygdala.serve.jobs import chat_jobs, completion_jobs
from amygdala.serve.schemas import APIError, ChatCompletionRequest, CompletionRequest

Kind = Literal["completion", "chat"]


def create_app(engine: Engine, options: ServeOptions) -> FastAPI:
    """The FastAPI app serving ``engine``'s model under ``options``; the engine's worker stops with the app."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        engine.start()
        yield
        engine.close()

    app = FastAPI(title="amygdala", lifespan=lifespan)
    app.add_middleware(_BodyLimit, limit=options.request_byte_limit())
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    router = APIRouter(prefix="/v1", dependencies=[Depends(_auth(options.api_key))])
    router.add_api_route("/models", lambda: _models(options), methods=["GET"])
    router.add_api_route("/readout/manifest", lambda: _manifest(engine), methods=["GET"])

    @router.post("/completions")
    async def completions(body: CompletionRequest, request: Request) -> Response:
        return await _answer("completion", completion_jobs(body, engine, options), body, request, engine, options)

    @router.post("/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        return await _answer("chat", chat_jobs(body, engine, options), body, request, engine, options)

    app.include_router(router)
    if options.ui:
        from amygdala.serve.ui import ui_router

        app.include_router(ui_router(_auth(options.api_key)))
    return app


class _BodyLimit:
    """Refuse a request body over ``limit`` bytes with a 413, by its Content-Length or as it streams in."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    def _error(self, size: str) -> APIError:
        return APIError(413, f"the request body has {size} bytes; this server accepts at most {self.limit}",
                        code="request_too_large")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if scope["type"] == "http" and declared.isdigit() and int(declared) > self.limit:
            error = self._error(declared.decode())
            return await JSONResponse(error.body(), status_code=error.status)(scope, receive, send)
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:  # FastAPI re-raises an HTTPException met while reading the body
                raise HTTPException(413, self._error(f"over {self.limit}").message)
            return message

        await self.app(scope, counted if scope["type"] == "http" else receive, send)


async def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, APIError)
    return JSONResponse(exc.body(), status_code=exc.status)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    """Unknown routes and methods answer in the OpenAI error shape too."""
    assert isinstance(exc, StarletteHTTPException)
    kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    code = "request_too_large" if exc.status_code == 413 else None
    return JSONResponse(APIError(exc.status_code, str(exc.detail), kind=kind, code=code).body(),
                        status_code=exc.status_code)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 becomes OpenAI's 400, naming the first bad field."""
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    parts = [f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'body'}: {e.get('msg', 'invalid')}" for e in errors]
    first = errors[0].get("loc", ()) if errors else ()
    param = ".".join(str(p) for p in first[1:]) or None
    return JSONResponse(APIError(400, "; ".join(parts), param=param, code="invalid_value").body(), status_code=400)


def _auth(api_key: str | None) -> Callable[..., Any]:
    async def check(authorization: str | None = Header(default=None)) -> None:
        if api_key is None:
            return
        if authorization is None or not hmac.compare_digest(authorization.encode(), f"Bearer {api_key}".encode()):
            raise APIError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'", code="invalid_api_key")

    return check


def _models(options: ServeOptions) -> dict[str, Any]:
    return {"object": "list", "data": [{"id": options.model_name, "object": "model", "created": 0,
                                        "owned_by": "amygdala"}]}


def _manifest(engine: Engine) -> dict[str, Any]:
    if engine.artifact is None:
        raise APIError(404, "this server was started without vectors: pass --vectors to read out",
                       code="no_readout", kind="not_found_error")
    artifact = engine.artifact
    manifest = {"concepts": list(artifact.concepts), "layers": list(artifact.layers),
                "hidden_size": artifact.hidden_size, "calibrated": artifact.calibration is not None}
    if (calibration := calibration_json(artifact)) is not None:  # lets a client z-score raw readouts itself
        manifest["calibration"] = calibration
    return manifest


async def _run_jobs(engine: Engine, jobs: list[GenerationJob]) -> AsyncIterator[tuple[int, GenerationStep]]:
    """Submit every job and yield ``(choice index, step)`` as the worker produces them; leaving early (the client
    went away, or an error) cancels every job of the request."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[tuple[int, GenerationStep | BaseException | None]] = asyncio.Queue()
    cancels = [threading.Event() for _ in jobs]

    def emitter(index: int) -> Emit:
        def emit(event: GenerationStep | BaseException | None) -> None:
            if loop.is_closed():  # the server is shutting down: nobody waits for this job any more
                cancels[index].set()
                return
            loop.call_soon_threadsafe(events.put_nowait, (index, event))

        return emit

    for index, job in enumerate(jobs):
        engine.submit(job, emitter(index), cancels[index])
    remaining = len(jobs)
    try:
        while remaining:
            index, event = await events.get()
            if event is None:
                remaining -= 1
            elif isinstance(event, BaseException):
                raise APIError(500, f"generation failed: {event}", kind="server_error") from event
            else:
                yield index, event
    finally:
        for cancel in cancels:
            cancel.set()


class _Reply:
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


async def _answer(kind: Kind, jobs: list[GenerationJob], body: CompletionRequest | ChatCompletionRequest,
                  request: Request, engine: Engine, options: ServeOptions) -> Response:
    prompts = {job.prompt_ids for job in jobs}
    reply = _Reply(kind, options.model_name, sum(len(ids) for ids in prompts))
    if body.stream:
        usage = body.stream_options is not None and body.stream_options.include_usage
        return StreamingResponse(_sse(reply, engine, jobs, usage), media_type="text/event-stream")
    results: list[list[GenerationStep]] = [[] for _ in jobs]

    async def consume() -> None:
        async for index, step in _run_jobs(engine, jobs):
            results[index].append(step)

    consumer = asyncio.ensure_future(consume())
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({consumer, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not consumer.done():
            consumer.cancel()  # the client went away: _run_jobs cancels the jobs
    if consumer.cancelled():
        return Response(status_code=499)
    consumer.result()
    return JSONResponse(reply.response(results))


async def _disconnected(request: Request) -> None:
    """Return once the client has gone (the request body is already read, so only a disconnect can arrive)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _sse_line(payload: dict[str, Any] | str) -> str:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n"


async def _sse(reply: _Reply, engine: Engine, jobs: list[GenerationJob], include_usage: bool) -> AsyncIterator[str]:
    generated = 0
    try:
        async for index, step in _run_jobs(engine, jobs):
            generated += 1
            yield _sse_line(reply.chunk(index, step))
        if include_usage:
            yield _sse_line(reply.envelope([], ".chunk" if reply.kind == "chat" else "") | {
                "usage": reply.usage(generated)})
    except APIError as exc:
        yield _sse_line(exc.body())
    yield _sse_line("[DONE]")
