"""The OpenAI-compatible web layer: routes, auth, SSE streaming, OpenAI-style errors. Transport only: generation
and readout happen in ``Engine`` (one worker thread) through ``amygdala.readout.generation`` and
``amygdala.readout.projection``.

No request gets a 5xx for what it sent: bodies are parsed by ``schemas.parse_request`` (strict types, one 400
naming the field); with an API key every path needs it (``/docs``, ``/redoc`` and ``/openapi.json`` too; ``/ui``
answers its own key page), checked before the body is read (``http_auth``); a full queue is a 429 with
``Retry-After``. Responses are strict JSON (``replies``: the shape of chunks and responses).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from amygdala.artifact import calibration_json
from amygdala.readout.generation import GenerationStep
from amygdala.serve.engine import Emit, Engine, GenerationJob, QueueFullError, ServeOptions
from amygdala.serve.jobs import chat_jobs, completion_jobs
from amygdala.serve.replies import Kind, Reply, sse_line, strict_json
from amygdala.serve.schemas import APIError, ChatCompletionRequest, CompletionRequest, parse_request
from amygdala.web.auth import UNAUTHORIZED_MESSAGE, BearerAuth, key_matches
from amygdala.web.payloads import NO_READOUT_CODE, manifest_payload

logger = logging.getLogger(__name__)


def _unauthorized() -> APIError:
    return APIError(401, UNAUTHORIZED_MESSAGE, code="invalid_api_key")  # the body of ``unauthorized_body()``


def _key_check(api_key: str | None) -> Callable[[str | None], Awaitable[None]]:
    """For a route that checks the key itself (``/ui``): raises the 401 ``APIError`` unless the header has it."""
    async def check(authorization: str | None) -> None:
        if api_key is not None and not key_matches(authorization.encode() if authorization else None, api_key):
            raise _unauthorized()

    return check


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
    if options.api_key is not None:  # added last, so it runs first: before the body limit and any parsing
        app.add_middleware(BearerAuth, api_key=options.api_key,
                           open_paths=frozenset({"/ui"}) if options.ui else frozenset())
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    router = APIRouter(prefix="/v1")
    router.add_api_route("/models", lambda: _json(_models(options)), methods=["GET"])
    router.add_api_route("/readout/manifest", lambda: _manifest(engine), methods=["GET"])

    @router.post("/completions", openapi_extra=_request_schema(CompletionRequest))
    async def completions(request: Request) -> Response:
        body = parse_request(await request.body(), CompletionRequest)
        return await _answer("completion", completion_jobs(body, engine, options), body, request, engine, options)

    @router.post("/chat/completions", openapi_extra=_request_schema(ChatCompletionRequest))
    async def chat_completions(request: Request) -> Response:
        body = parse_request(await request.body(), ChatCompletionRequest)
        return await _answer("chat", chat_jobs(body, engine, options), body, request, engine, options)

    app.include_router(router)
    if options.ui:
        from amygdala.serve.ui import ui_router

        app.include_router(ui_router(_key_check(options.api_key)))
    return app


def _request_schema(model: type[CompletionRequest | ChatCompletionRequest]) -> dict[str, Any]:
    """The JSON body of a route for /docs (the route reads the body itself, to check auth first)."""
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": model.model_json_schema(ref_template="#/components/schemas/{model}")}}}}


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
            return await _json(error.body(), error.status)(scope, receive, send)
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:  # FastAPI re-raises an HTTPException met while reading the body
                raise HTTPException(413, self._error(f"over {self.limit}").message)
            return message

        await self.app(scope, counted if scope["type"] == "http" else receive, send)


def _json(payload: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Every JSON answer of this app, encoded by ``web.payloads.strict_json`` (non-finite numbers as null)."""
    return Response(strict_json(payload), status_code=status, headers=headers, media_type="application/json")


async def _api_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return _json(exc.body(), exc.status, exc.headers)


async def _unexpected_error(_request: Request, exc: Exception) -> Response:
    """A bug, not the request's fault: logged with its traceback, answered in the OpenAI shape (never plain text)."""
    logger.error("unexpected error", exc_info=exc)
    error = APIError(500, f"internal error ({type(exc).__name__}); see the server log", kind="server_error")
    return _json(error.body(), 500)


async def _http_error(_request: Request, exc: Exception) -> Response:
    """Unknown routes and methods answer in the OpenAI error shape too."""
    assert isinstance(exc, StarletteHTTPException)
    kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    code = "request_too_large" if exc.status_code == 413 else None
    return _json(APIError(exc.status_code, str(exc.detail), kind=kind, code=code).body(), exc.status_code)


async def _validation_error(_request: Request, exc: Exception) -> Response:
    """FastAPI's 422 becomes OpenAI's 400, naming the first bad field."""
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    parts = [f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'body'}: {e.get('msg', 'invalid')}" for e in errors]
    first = errors[0].get("loc", ()) if errors else ()
    param = ".".join(str(p) for p in first[1:]) or None
    return _json(APIError(400, "; ".join(parts), param=param, code="invalid_value").body(), 400)


def _models(options: ServeOptions) -> dict[str, Any]:
    return {"object": "list", "data": [{"id": options.model_name, "object": "model", "created": 0,
                                        "owned_by": "amygdala"}]}


def _manifest(engine: Engine) -> Response:
    """``web.payloads.manifest_payload`` of the served artifact; readouts are raw unless a request asks for z."""
    if engine.artifact is None:
        raise APIError(404, "this server was started without vectors: pass --vectors to read out",
                       code=NO_READOUT_CODE, kind="not_found_error")
    artifact = engine.artifact
    return _json(manifest_payload(artifact.concepts, artifact.layers, hidden_size=artifact.hidden_size,
                                  calibration=calibration_json(artifact), zscore=False))


class _Submitted:
    """A request's jobs, queued on the engine at once (or refused whole with a 429 when the queue is full).
    ``steps`` yields ``(choice index, step)`` as the worker produces them; ``cancel`` (also called when ``steps``
    is left early: the client went away, or an error) stops every job of the request."""

    def __init__(self, engine: Engine, jobs: list[GenerationJob]) -> None:
        self.loop = asyncio.get_running_loop()
        self.events: asyncio.Queue[tuple[int, GenerationStep | BaseException | None]] = asyncio.Queue()
        self.cancels = [threading.Event() for _ in jobs]
        try:
            engine.submit_all([(job, self._emitter(index), self.cancels[index]) for index, job in enumerate(jobs)])
        except QueueFullError as exc:
            raise APIError(429, str(exc), code="rate_limit_exceeded", kind="rate_limit_error",
                           headers={"Retry-After": str(exc.retry_after_s)}) from None

    def _emitter(self, index: int) -> Emit:
        def emit(event: GenerationStep | BaseException | None) -> None:
            if self.loop.is_closed():  # the server is shutting down: nobody waits for this job any more
                self.cancels[index].set()
                return
            self.loop.call_soon_threadsafe(self.events.put_nowait, (index, event))

        return emit

    def cancel(self) -> None:
        for cancel in self.cancels:
            cancel.set()

    async def steps(self) -> AsyncIterator[tuple[int, GenerationStep]]:
        remaining = len(self.cancels)
        try:
            while remaining:
                index, event = await self.events.get()
                if event is None:
                    remaining -= 1
                elif isinstance(event, BaseException):
                    raise APIError(500, f"generation failed: {event}", kind="server_error") from event
                else:
                    yield index, event
        finally:
            self.cancel()


async def _answer(kind: Kind, jobs: list[GenerationJob], body: CompletionRequest | ChatCompletionRequest,
                  request: Request, engine: Engine, options: ServeOptions) -> Response:
    prompts = {job.prompt_ids for job in jobs}
    reply = Reply(kind, options.model_name, sum(len(ids) for ids in prompts))
    submitted = _Submitted(engine, jobs)  # before the 200 is sent: a full queue is still a 429
    if body.stream:
        usage = body.stream_options is not None and body.stream_options.include_usage
        return StreamingResponse(_sse(reply, submitted, usage), media_type="text/event-stream",
                                 background=BackgroundTask(submitted.cancel))
    results: list[list[GenerationStep]] = [[] for _ in jobs]

    async def consume() -> None:
        async for index, step in submitted.steps():
            results[index].append(step)

    consumer = asyncio.ensure_future(consume())
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({consumer, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not consumer.done():
            consumer.cancel()
        submitted.cancel()  # the client went away (or all is done): no job of this request runs on
    if consumer.cancelled():
        return Response(status_code=499)
    consumer.result()
    return _json(reply.response(results))


async def _disconnected(request: Request) -> None:
    """Return once the client has gone (the request body is already read, so only a disconnect can arrive)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _sse(reply: Reply, submitted: _Submitted, include_usage: bool) -> AsyncIterator[str]:
    generated = 0
    try:
        async for index, step in submitted.steps():
            generated += 1
            yield sse_line(reply.chunk(index, step))
        if include_usage:
            yield sse_line(reply.envelope([], ".chunk" if reply.kind == "chat" else "") | {
                "usage": reply.usage(generated)})
    except APIError as exc:
        yield sse_line(exc.body())
    yield sse_line("[DONE]")
