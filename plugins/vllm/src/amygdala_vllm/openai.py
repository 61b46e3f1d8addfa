"""The OpenAI-compatible HTTP surface: ``choices[i].readout`` in responses, and ``GET /v1/readout/manifest``.

- Non-streaming ``/v1/completions`` and ``/v1/chat/completions``: ``choices[i].readout`` lists one
  ``[n_layers][n_concepts]`` array per generated token.
- Streaming: every chunk that carries a generated token carries ``choices[i].readout``, that token's
  ``[n_layers][n_concepts]``. When vLLM merged several tokens into one chunk (a client slower than the engine),
  the chunk is preceded by one empty-text chunk per extra token, so each chunk still carries exactly one
  readout. Chat's first chunk (the role) carries none.
- The manifest route is a ``vllm.endpoint_plugins`` entry point, which vLLM loads only when ``VLLM_PLUGINS``
  names it (``VLLM_PLUGINS=amygdala_readout``).
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from amygdala.web.payloads import NO_READOUT_CODE, error_body, manifest_payload, sse_line, strict_json
from amygdala_vllm.engine import READOUT_ATTR, _patch

PLUGIN_NAME = "amygdala_readout"
MANIFEST_ROUTE = "/v1/readout/manifest"


class _StreamReadouts:
    """Readouts of tokens the engine produced but no chunk has carried yet, per choice index."""

    def __init__(self, chat: bool) -> None:
        self.chat = chat
        self.pending: defaultdict[int, deque[Any]] = defaultdict(deque)

    def feed(self, choice: int, completion: Any) -> None:
        self.pending[choice].extend(getattr(completion, READOUT_ATTR, None) or [])

    def events(self, event: str) -> list[str]:
        """``event`` with readouts added; leftover readouts go out before ``[DONE]``."""
        if event.startswith("data: [DONE]"):
            return [*self._leftovers(), event]
        if not event.startswith("data: {"):
            return [event]
        chunk = json.loads(event[len("data: "):])
        extra: list[str] = []
        for choice in chunk.get("choices") or []:
            queue = self.pending.get(choice.get("index"))
            if not queue or (self.chat and "role" in (choice.get("delta") or {})):
                continue
            while len(queue) > 1:
                extra.append(self._lone(chunk, choice["index"], queue.popleft()))
            choice["readout"] = queue.popleft()
        if not extra and not any("readout" in c for c in chunk.get("choices") or []):
            return [event]
        return [*extra, sse_line(chunk)]

    def _lone(self, chunk: dict[str, Any], index: int, readout: Any) -> str:
        body: dict[str, Any] = {"index": index, "readout": readout, "logprobs": None, "finish_reason": None}
        if self.chat:
            body["delta"] = {}
        else:
            body["text"] = ""
        lone = {key: value for key, value in chunk.items() if key not in ("choices", "usage")}
        return sse_line({**lone, "choices": [body]})

    def _leftovers(self) -> list[str]:
        head = {"object": "chat.completion.chunk" if self.chat else "text_completion"}
        return [self._lone(head, index, readout) for index, queue in sorted(self.pending.items()) for readout in queue]




async def _feeding(results: AsyncIterator[Any], readouts: _StreamReadouts, n_choices: int) -> AsyncIterator[Any]:
    """Pass the engine's outputs through, noting their readouts (completions yield ``(prompt_idx, output)``)."""
    async for item in results:
        prompt_index, output = item if isinstance(item, tuple) else (0, item)
        for completion in output.outputs:
            readouts.feed(completion.index + prompt_index * n_choices, completion)
        yield item


def _stream(chat: bool, results_at: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        async def stream_generator(self: Any, request: Any, *args: Any, **kwargs: Any) -> AsyncIterator[str]:
            readouts = _StreamReadouts(chat)
            args_list = list(args)
            if "result_generator" in kwargs:
                kwargs["result_generator"] = _feeding(kwargs["result_generator"], readouts, request.n or 1)
            else:
                args_list[results_at] = _feeding(args_list[results_at], readouts, request.n or 1)
            async for event in original(self, request, *args_list, **kwargs):
                for out in readouts.events(event):
                    yield out

        return stream_generator

    return make


def _completion_response(original: Callable[..., Any]) -> Callable[..., Any]:
    def request_output_to_completion_response(self: Any, final_res_batch: list[Any], *args: Any, **kwargs: Any) -> Any:
        response = original(self, final_res_batch, *args, **kwargs)
        completions = [completion for output in final_res_batch for completion in output.outputs]
        for choice, completion in zip(response.choices, completions, strict=True):
            if (readout := getattr(completion, READOUT_ATTR, None)) is not None:
                choice.readout = readout
        return response

    return request_output_to_completion_response


def _chat_response(original: Callable[..., Any]) -> Callable[..., Any]:
    async def chat_completion_full_generator(self: Any, request: Any, result_generator: AsyncIterator[Any],
                                             *args: Any, **kwargs: Any) -> Any:
        by_index: dict[int, Any] = {}

        async def noting() -> AsyncIterator[Any]:
            async for output in result_generator:
                by_index.update({completion.index: completion for completion in output.outputs})
                yield output

        response = await original(self, request, noting(), *args, **kwargs)
        for choice in getattr(response, "choices", None) or []:
            completion = by_index.get(choice.index)
            if completion is not None and (readout := getattr(completion, READOUT_ATTR, None)) is not None:
                choice.readout = readout
        return response

    return chat_completion_full_generator


def install_patches() -> None:
    """Patch the OpenAI serving classes of this process (idempotent)."""
    from vllm.entrypoints.openai.chat_completion.serving import OpenAIServingChat
    from vllm.entrypoints.openai.completion.serving import OpenAIServingCompletion

    _patch(OpenAIServingCompletion, "request_output_to_completion_response", _completion_response)
    # completion_stream_generator(request, engine_inputs, result_generator, ...)
    _patch(OpenAIServingCompletion, "completion_stream_generator", _stream(chat=False, results_at=1))
    _patch(OpenAIServingChat, "chat_completion_full_generator", _chat_response)
    # chat_completion_stream_generator(request, result_generator, ...)
    _patch(OpenAIServingChat, "chat_completion_stream_generator", _stream(chat=True, results_at=0))


class ReadoutEndpoint:
    """``vllm.endpoint_plugins`` entry: ``GET /v1/readout/manifest`` answers ``{concepts, layers, ...}``."""

    name = PLUGIN_NAME
    required_tasks = ("generate",)

    def attach_router(self, app: Any) -> None:
        from fastapi.responses import Response

        async def readout_manifest() -> Response:
            manifest = getattr(app.state, "amygdala_manifest", None)
            if manifest is None:
                body = error_body("this server reads out nothing: start it with VLLM_READOUT_VECTORS set",
                                  kind="not_found_error", code=NO_READOUT_CODE)
                return Response(strict_json(body), status_code=404, media_type="application/json")
            return Response(strict_json(manifest), media_type="application/json")

        app.add_api_route(MANIFEST_ROUTE, readout_manifest, methods=["GET"])

    async def init_state(self, engine_client: Any, state: Any, args: Any) -> None:
        """Hook the workers now, so an artifact that does not fit the model stops the server at startup."""
        from amygdala_vllm.config import config_from_env, disabled
        from amygdala_vllm.engine import ensure_installed_async

        config = None if disabled() else config_from_env()
        state.amygdala_manifest = None
        if config is None or engine_client is None:
            return
        await ensure_installed_async(engine_client, config)
        state.amygdala_manifest = manifest_payload(config.concepts, config.layers, hidden_size=config.hidden_size,
                                                   calibration=config.calibration, zscore=config.zscore)
