"""Frontend side, in the process that owns the engine client (the API server, or the process running ``LLM``).

- Engine arguments: the worker extension and the readout's compile-cache key are added before vLLM builds its
  config; the compilation mode is the user's (the readout op is traced into the compiled graph).
- Model runners hook the model as soon as it is loaded (before compilation and CUDA-graph capture).
- Each ``CompletionOutput`` the output processor makes is tagged with its engine request id and the position
  of its first token (``prompt_len - 1 + k`` for generated token k), so n > 1 children and merged deltas stay
  apart.
- ``AsyncLLM.generate`` (the API server) and ``LLMEngine.step`` (offline ``LLM.generate``) fetch the tagged
  tokens' rows from the workers and set ``output.readout``: one ``[n_layers][n_concepts]`` list per token of
  ``output.token_ids``, layers in manifest order. The async side sends the takes of one event-loop tick in one
  ``collective_rpc``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from amygdala_vllm.config import PluginConfigError, ReadoutConfig
from amygdala_vllm.readout_op import OP_NAME
from amygdala_vllm.runner import check_v1_chosen, v2_only_features
from amygdala_vllm.worker import Span, install_on_load, require_hooks_on_load

logger = logging.getLogger(__name__)
WORKER_EXTENSION = "amygdala_vllm.worker.ReadoutWorkerExtension"
SPAN_ATTR = "_amygdala_span"
READOUT_ATTR = "readout"
_PATCHED = "__amygdala_readout__"
CACHE_KEY = "amygdala_readout"


class ReadoutMissingError(RuntimeError):
    """A worker has no row for a token the engine produced: an engine behaviour the plugin does not cover."""


def _patch(owner: type, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    original = getattr(owner, name)
    if getattr(original, _PATCHED, False):
        return
    replacement = make(original)
    setattr(replacement, _PATCHED, True)
    setattr(owner, name, replacement)


def force_readout_args(args: Any, config: ReadoutConfig) -> None:
    """Add the worker extension and the readout's compile-cache key to ``EngineArgs``; refuse what the plugin cannot
    read. The compilation mode is left alone: the readout op is part of the traced graph."""
    problems = []
    if args.worker_extension_cls not in ("", WORKER_EXTENSION):
        problems.append(f"worker_extension_cls is already {args.worker_extension_cls!r}; amygdala-vllm needs "
                        f"{WORKER_EXTENSION!r} (unset one of them)")
    if args.speculative_config:
        problems.append("speculative decoding would read draft tokens: drop --speculative-config")
    problems.extend(v2_only_features(args))
    if problems:
        raise PluginConfigError("amygdala-vllm: " + "; ".join(problems))
    args.worker_extension_cls = WORKER_EXTENSION
    args.additional_config = {**(args.additional_config or {}), CACHE_KEY: compile_cache_key(config)}


def compile_cache_key(config: ReadoutConfig) -> dict[str, Any]:
    """What the traced graph depends on. vLLM keys its AOT compile cache on the ``VllmConfig`` hash (which covers
    ``additional_config``) and the model's source, not on forward hooks: without this key an engine would load a
    graph compiled without the readout op (or one with it, plugin off)."""
    digest = hashlib.sha256(config.vectors.read_bytes()).hexdigest()[:16]
    return {"layers": list(config.layers), "concepts": len(config.concepts), "vectors_sha256": digest,
            "op": OP_NAME}


def _tagged(original: Callable[..., Any]) -> Callable[..., Any]:
    def _new_completion_output(self: Any, token_ids: list[int], finish_reason: Any, stop_reason: Any) -> Any:
        output = original(self, token_ids, finish_reason, stop_reason)
        first = self.detokenizer.num_output_tokens() - len(output.token_ids)
        setattr(output, SPAN_ATTR, (self.request_id, self.prompt_len - 1 + first))
        return output

    return _new_completion_output


def _spans(outputs: list[Any]) -> list[tuple[Any, Span]]:
    """(completion, span) for each tagged completion; a finished one releases its rows."""
    found = []
    for output in outputs:
        for completion in getattr(output, "outputs", None) or []:
            tag = getattr(completion, SPAN_ATTR, None)
            if tag is not None:
                found.append((completion, (tag[0], tag[1], len(completion.token_ids),
                                           completion.finish_reason is not None)))
    return found


def merge_rows(results: list[dict[str, Any] | None], spans: list[Span], layers: tuple[int, ...]) -> list[list[Any]]:
    """Per span ``[count][n_layers][n_concepts]`` in manifest layer order, from the workers' partial answers.

    Tensor-parallel ranks answer the same layers (the first answer is used); pipeline stages answer theirs.
    """
    source: dict[int, tuple[dict[str, Any], int]] = {}
    for result in results:
        for local_index, layer in enumerate((result or {}).get("layers", [])):
            source.setdefault(layer, (result or {}, local_index))
    if missing_layers := [layer for layer in layers if layer not in source]:
        raise ReadoutMissingError(f"no worker hooks layer(s) {missing_layers}; were the workers installed?")
    merged = []
    for index, (req_id, first, count, _release) in enumerate(spans):
        parts = {layer: source[layer][0]["spans"][index] for layer in layers}
        if lacking := sorted({p for part in parts.values() for p in part.get("missing", [])}):
            raise ReadoutMissingError(f"no readout for request {req_id} at position(s) {lacking[:8]} "
                                      f"(tokens from position {first})")
        merged.append([[parts[layer]["values"][token][source[layer][1]] for layer in layers]
                       for token in range(count)])
    return merged


def _attach(found: list[tuple[Any, Span]], rows: list[list[Any]]) -> None:
    for (completion, _span), values in zip(found, rows, strict=True):
        setattr(completion, READOUT_ATTR, values)


def _split(results: list[dict[str, Any] | None], start: int, stop: int) -> list[dict[str, Any] | None]:
    return [None if r is None else {"layers": r["layers"], "spans": r["spans"][start:stop]} for r in results]


class _AsyncTaker:
    """Coalesces the takes of every request in one event-loop tick into one ``collective_rpc``."""

    def __init__(self, engine: Any, config: ReadoutConfig) -> None:
        self.engine = engine
        self.config = config
        self.pending: list[tuple[list[Span], asyncio.Future[list[list[Any]]]]] = []
        self.background: set[asyncio.Task[Any]] = set()

    async def take(self, spans: list[Span]) -> list[list[Any]]:
        future: asyncio.Future[list[list[Any]]] = asyncio.get_running_loop().create_future()
        self.pending.append((spans, future))
        if len(self.pending) == 1:
            self._spawn(self._flush())
        return await future

    def release(self, req_ids: list[str]) -> None:
        self._spawn(self.engine.collective_rpc("amygdala_readout_release", args=(req_ids,)))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let the other requests of this tick join
        batch, self.pending = self.pending, []
        flat = [span for spans, _ in batch for span in spans]
        try:
            results = await self.engine.collective_rpc("amygdala_readout_take", args=(flat,))
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        offset = 0
        for spans, future in batch:
            part = _split(results, offset, offset + len(spans))
            offset += len(spans)
            if future.done():
                continue
            try:
                future.set_result(merge_rows(part, spans, self.config.layers))
            except ReadoutMissingError as exc:
                future.set_exception(exc)


def _install_args(config: ReadoutConfig) -> tuple[str, str, bool]:
    return (str(config.vectors), str(config.manifest), config.zscore)


async def ensure_installed_async(engine: Any, config: ReadoutConfig) -> None:
    """Hook the workers once per engine, before its first request; a failure is raised to every caller."""
    task = engine.__dict__.get("_amygdala_install")
    if task is None:
        task = asyncio.ensure_future(engine.collective_rpc("amygdala_readout_install", args=_install_args(config)))
        engine.__dict__["_amygdala_install"] = task
    await task


def _ensure_installed_sync(engine: Any, config: ReadoutConfig) -> None:
    if not engine.__dict__.get("_amygdala_installed"):
        engine.collective_rpc("amygdala_readout_install", args=_install_args(config))
        engine.__dict__["_amygdala_installed"] = True


def _async_generate(config: ReadoutConfig) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        async def generate(self: Any, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            taker = self.__dict__.setdefault("_amygdala_taker", _AsyncTaker(self, config))
            unreleased: set[str] = set()
            try:
                async for output in original(self, *args, **kwargs):
                    if found := _spans([output]):
                        _attach(found, await taker.take([span for _, span in found]))
                        for _, (req_id, _first, _count, release) in found:
                            (unreleased.discard if release else unreleased.add)(req_id)
                    yield output
            finally:
                if unreleased:
                    taker.release(sorted(unreleased))

        return generate

    return make


def _async_add_request(config: ReadoutConfig) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        async def add_request(self: Any, *args: Any, **kwargs: Any) -> Any:
            await ensure_installed_async(self, config)
            return await original(self, *args, **kwargs)

        return add_request

    return make


def _sync_engine(config: ReadoutConfig) -> tuple[Callable[..., Any], Callable[..., Any]]:
    def make_add(original: Callable[..., Any]) -> Callable[..., Any]:
        def add_request(self: Any, *args: Any, **kwargs: Any) -> Any:
            _ensure_installed_sync(self, config)
            return original(self, *args, **kwargs)

        return add_request

    def make_step(original: Callable[..., Any]) -> Callable[..., Any]:
        def step(self: Any) -> list[Any]:
            outputs = original(self)
            if found := _spans(outputs):
                spans = [span for _, span in found]
                results = self.collective_rpc("amygdala_readout_take", args=(spans,))
                _attach(found, merge_rows(results, spans, config.layers))
            return outputs

        return step

    return make_add, make_step


def install_patches(config: ReadoutConfig) -> None:
    """Patch the engine classes of this process (idempotent)."""
    from vllm.engine.arg_utils import EngineArgs
    from vllm.v1.engine.async_llm import AsyncLLM
    from vllm.v1.engine.llm_engine import LLMEngine
    from vllm.v1.engine.output_processor import RequestState

    def make_config(original: Callable[..., Any]) -> Callable[..., Any]:
        def create_engine_config(self: Any, *args: Any, **kwargs: Any) -> Any:
            force_readout_args(self, config)
            vllm_config = original(self, *args, **kwargs)
            check_v1_chosen(vllm_config)
            return vllm_config

        return create_engine_config

    _patch(EngineArgs, "create_engine_config", make_config)
    _patch(RequestState, "_new_completion_output", _tagged)
    _patch(AsyncLLM, "add_request", _async_add_request(config))
    _patch(AsyncLLM, "generate", _async_generate(config))
    make_add, make_step = _sync_engine(config)
    _patch(LLMEngine, "add_request", make_add)
    _patch(LLMEngine, "step", make_step)
    from vllm.platforms import current_platform
    from vllm.v1.worker.gpu_worker import Worker

    if current_platform.is_cpu():
        from vllm.v1.worker.cpu_model_runner import CPUModelRunner as runner_class
    else:
        from vllm.v1.worker.gpu_model_runner import GPUModelRunner as runner_class
    _patch(runner_class, "load_model", install_on_load(config))
    # Every worker (CPUWorker and the GPU Worker share this load_model) fails at start when its runner, whatever its
    # class, loaded the model without the hooks above: never a server that answers without readouts.
    _patch(Worker, "load_model", require_hooks_on_load)
