"""Worker side: the readout op inside the model's forward, and the rows of sampled tokens kept per request.

The hooks are registered when the model runner loads the model (``load_model`` is patched by ``register()`` in
every process), that is before vLLM compiles or captures anything: Dynamo inlines module hooks, so each hooked
decoder block's ``amygdala::readout_into`` op lands in the traced graph (and in CUDA graphs), and under
``--enforce-eager`` the same hooks simply run eagerly. Each op writes ``(hidden + residual) @ vectors.T`` for every
row of the batch into one persistent buffer ``[n_local_layers, max_num_tokens, n_concepts]``.

After each forward, ``execute_model``'s wrapper gathers only the rows that produce a sampled token (the last row of
each request whose position reached ``prompt_len - 1``), in one device-to-host copy per step, and keeps them per
engine request and absolute position until the frontend takes them (``collective_rpc``). Generated token k's
readout is the residual at position ``prompt_len - 1 + k``: the row whose logits sampled it. With tensor
parallelism only TP rank 0 hooks and reports (every rank holds the same residual stream after the all-reduce).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from amygdala_vllm.config import PluginConfigError, ReadoutConfig

logger = logging.getLogger(__name__)
#: A request's rows are dropped this long after the engine forgot it, when no frontend released them (aborts).
STALE_AFTER_S = 300.0
Span = tuple[str, int, int, bool]  # engine request id, first position, number of positions, release afterwards
READOUTS_ATTR = "_amygdala_readouts"


@dataclass(frozen=True)
class _StepRows:
    """One step's sampled rows on their way to the host: ``values [n_local_layers, k, C]``, row j is ``keys[j]``."""

    values: torch.Tensor
    keys: list[tuple[str, int]]
    ready: Any  # torch.cuda.Event once the copy is queued on a GPU; None when the copy was synchronous


def sampled_rows(starts: list[int], computed: list[int], keep_from: list[int]) -> list[tuple[int, int, int]]:
    """``(request index, flattened row, position)`` of each request whose last scheduled row samples a generated
    token: request ``i`` owns rows ``starts[i]:starts[i + 1]`` at positions from ``computed[i]``; chunks of a
    prompt before its last position (``keep_from[i] = prompt_len - 1``) sample nothing."""
    found = []
    for i, kept in enumerate(keep_from):
        last = starts[i + 1] - 1
        position = computed[i] + last - starts[i]
        if last >= starts[i] and position >= kept:
            found.append((i, last, position))
    return found


class _Readouts:
    """The readout op's inputs on one worker, and the sampled rows it keeps per engine request and position."""

    def __init__(self, runner: Any, projector: Any, config: ReadoutConfig, local: list[int]) -> None:
        from amygdala_vllm.readout_op import readout_buffer

        device = torch.device(runner.device)
        self.runner = runner
        self.projector = projector  # on the CPU: only z-scores of the rows that left the device use it
        self.zscore = config.zscore
        self.local = local
        self.key = (str(config.vectors), str(config.manifest), config.zscore)
        positions = [projector.layers.index(layer) for layer in local]
        self.vectors = [projector.vectors[position].to(device) for position in positions]
        self.buffer = readout_buffer(len(local), runner.max_num_tokens, len(projector.concepts), device)
        self.rows: dict[str, dict[int, torch.Tensor]] = {}
        self.touched: dict[str, float] = {}
        self.pending: list[_StepRows] = []
        self.lock = threading.Lock()
        self.last_sweep = time.monotonic()

    def hook(self, slot: int) -> Callable[[nn.Module, object, object], None]:
        """Forward hook of the ``slot``-th local layer's block: traced into the graph, no Python-side effects."""
        vectors, buffer = self.vectors[slot], self.buffer

        def hook(_module: nn.Module, _inputs: object, output: object) -> None:
            hidden, residual = _block_output(output)
            torch.ops.amygdala.readout_into(hidden, residual, vectors, buffer, slot)

        return hook

    def execute_model(self, original: Callable[..., Any]) -> Callable[..., Any]:
        """After each forward of scheduled requests, send their sampled rows towards the host."""

        def execute_model(*args: Any, **kwargs: Any) -> Any:
            output = original(*args, **kwargs)
            scheduler_output = args[0] if args else kwargs["scheduler_output"]
            if scheduler_output.total_num_scheduled_tokens > 0 and self.runner.input_batch.num_reqs > 0:
                self._collect()
            return output

        return execute_model

    def _collect(self) -> None:
        batch = self.runner.input_batch
        n_reqs = batch.num_reqs
        req_ids = list(batch.req_ids[:n_reqs])
        found = sampled_rows([int(s) for s in self.runner.query_start_loc.np[: n_reqs + 1]],
                             [int(c) for c in batch.num_computed_tokens_cpu[:n_reqs]],
                             [self.runner.requests[req_id].num_prompt_tokens - 1 for req_id in req_ids])
        if not found:
            return
        index = torch.tensor([row for _, row, _ in found], device=self.buffer.device)
        values = self.buffer.index_select(1, index)  # [n_local_layers, k, C], still on the device
        ready = None
        if values.device.type == "cuda":  # one non-blocking copy per step into pinned memory
            host = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
            host.copy_(values, non_blocking=True)
            ready = torch.cuda.Event()
            ready.record()
            values = host
        keys = [(req_ids[i], position) for i, _, position in found]
        with self.lock:
            self.pending.append(_StepRows(values, keys, ready))
            self._drain(wait=False)
        self._sweep()

    def _drain(self, wait: bool) -> None:
        """Move copied step rows into ``rows`` (z-scored if asked); with ``wait``, wait for copies in flight."""
        while self.pending and (wait or self.pending[0].ready is None or self.pending[0].ready.query()):
            step = self.pending.pop(0)
            if step.ready is not None:
                step.ready.synchronize()
            values = step.values
            if self.zscore:
                from amygdala.readout.projection import calibrate_readout

                values = torch.stack([calibrate_readout(values[slot], self.projector,
                                                        self.projector.layers.index(layer))
                                      for slot, layer in enumerate(self.local)])
            now = time.monotonic()
            for j, (req_id, position) in enumerate(step.keys):
                self.rows.setdefault(req_id, {})[position] = values[:, j]
                self.touched[req_id] = now

    def take(self, spans: list[Span]) -> dict[str, Any]:
        """Each span's rows ``[count][n_local_layers][n_concepts]``, or the positions it lacks."""
        found: list[dict[str, list[Any]]] = []
        now = time.monotonic()
        with self.lock:
            self._drain(wait=True)
            for req_id, first, count, release in spans:
                rows = self.rows.get(req_id, {})
                wanted = range(first, first + count)
                missing = [position for position in wanted if position not in rows]
                if missing:
                    found.append({"missing": missing})
                else:
                    found.append({"values": torch.stack([rows[position] for position in wanted]).tolist()})
                if release:
                    self.rows.pop(req_id, None)
                    self.touched.pop(req_id, None)
                elif req_id in self.rows:
                    self.touched[req_id] = now
        return {"layers": self.local, "spans": found}

    def release(self, req_ids: list[str]) -> None:
        with self.lock:
            for req_id in req_ids:
                self.rows.pop(req_id, None)
                self.touched.pop(req_id, None)

    def _sweep(self) -> None:
        """Drop the rows of requests the engine no longer holds and nobody released (aborted clients)."""
        now = time.monotonic()
        if now - self.last_sweep < 30:
            return
        self.last_sweep = now
        with self.lock:
            stale = [req_id for req_id, seen in self.touched.items()
                     if now - seen > STALE_AFTER_S and req_id not in self.runner.requests]
            for req_id in stale:
                logger.warning("amygdala-vllm: dropping readouts of request %s, never released", req_id)
                self.rows.pop(req_id, None)
                self.touched.pop(req_id, None)


def _block_output(output: object) -> tuple[torch.Tensor, torch.Tensor | None]:
    """vLLM decoder blocks return ``(hidden_states, residual)``; the residual stream after the block is their sum."""
    if isinstance(output, torch.Tensor):
        return output, None
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        residual = output[1] if len(output) > 1 else None
        if isinstance(residual, torch.Tensor) and residual.shape == output[0].shape:
            return output[0], residual
        return output[0], None
    raise TypeError(f"decoder block returned {type(output).__name__}; expected a tensor or (hidden, residual)")


def reports(tp_rank: int) -> bool:
    """Tensor-parallel ranks hold the same residual stream after each block's all-reduce: rank 0 alone reports."""
    return tp_rank == 0


def install(runner: Any, config: ReadoutConfig) -> _Readouts | None:
    """Fit-check the artifact against the loaded model and hook its blocks (before any compilation or capture);
    ``None`` on a tensor-parallel rank other than 0, which runs the model untouched."""
    from vllm.distributed import get_tensor_model_parallel_rank
    from vllm.model_executor.models.utils import PPMissingLayer

    import amygdala_vllm.readout_op  # noqa: F401  (registers amygdala::readout_into)
    from amygdala.artifact import check_fits_model, load_artifact
    from amygdala.forward.models import decoder_layers
    from amygdala.readout.projection import projector_for

    if runner.speculative_config is not None:
        raise PluginConfigError("amygdala-vllm: speculative decoding is on (drafts would be read as tokens): drop "
                                "the speculative config")
    model = runner.get_model()
    blocks = decoder_layers(model)
    artifact = load_artifact(config.vectors, config.manifest)
    check_fits_model(artifact, n_layers=len(blocks), hidden_size=runner.model_config.get_hidden_size(),
                     model_id=str(runner.model_config.model))
    if not reports(get_tensor_model_parallel_rank()):
        return None
    local = [layer for layer in artifact.layers if not isinstance(blocks[layer], PPMissingLayer)]
    readouts = _Readouts(runner, projector_for(artifact, "cpu"), config, local)
    runner.execute_model = readouts.execute_model(runner.execute_model)
    for slot, layer in enumerate(local):
        blocks[layer].register_forward_hook(readouts.hook(slot))
    logger.info("amygdala-vllm: reading %d concepts at layers %s", len(artifact.concepts), local)
    return readouts


def install_on_load(config: ReadoutConfig) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``ModelRunner.load_model`` wrapper: hook the model as soon as it is loaded."""

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def load_model(self: Any, *args: Any, **kwargs: Any) -> Any:
            result = original(self, *args, **kwargs)
            if READOUTS_ATTR not in self.__dict__:
                self.__dict__[READOUTS_ATTR] = install(self, config)
            return result

        return load_model

    return make


def check_hooked(runner: Any) -> None:
    """A worker's model runner must have loaded its model through the plugin's hooks (``install_on_load``)."""
    from amygdala_vllm.runner import HOOKED_RUNNERS, V2_VAR, runner_name

    if READOUTS_ATTR not in runner.__dict__:
        raise PluginConfigError(f"amygdala-vllm: the worker's model runner {runner_name(runner)} loaded the model "
                                f"without the readout hooks (the plugin hooks {' and '.join(HOOKED_RUNNERS)} only): "
                                f"run vLLM's default worker with {V2_VAR}=0 and VLLM_READOUT_VECTORS set in every "
                                f"vLLM process, or set AMYGDALA_VLLM_DISABLE=1")


def require_hooks_on_load(original: Callable[..., Any]) -> Callable[..., Any]:
    """``Worker.load_model`` wrapper: the engine fails at start, not at the first request, when this worker's runner
    (Model Runner V2, or any runner with its own ``load_model``) loaded the model without the hooks."""

    def load_model(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        check_hooked(self.model_runner)
        return result

    return load_model


class ReadoutWorkerExtension:
    """RPC targets mixed into vLLM's worker; ``self.model_runner`` is the worker's model runner."""

    def _amygdala(self) -> _Readouts | None:
        runner = self.model_runner  # type: ignore[attr-defined]
        check_hooked(runner)
        readouts: _Readouts | None = runner.__dict__[READOUTS_ATTR]
        return readouts

    def amygdala_readout_install(self, vectors: str, manifest: str, zscore: bool) -> list[int] | None:
        """Check the hooks placed at load time read this artifact; returns the reported layers (None: not reporting)."""
        current = self._amygdala()
        if current is not None and current.key != (vectors, manifest, zscore):
            raise PluginConfigError(f"amygdala-vllm: workers already read {current.key[0]}; restart vLLM to "
                                    f"read {vectors}")
        return None if current is None else current.local

    def amygdala_readout_take(self, spans: list[Span]) -> dict[str, Any] | None:
        current = self._amygdala()
        return None if current is None else current.take(spans)

    def amygdala_readout_release(self, req_ids: list[str]) -> None:
        current = self._amygdala()
        if current is not None:
            current.release(req_ids)
