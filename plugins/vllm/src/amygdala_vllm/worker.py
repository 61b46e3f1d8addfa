"""Worker side: hooks on the decoder layers project every computed position onto the artifact's unit vectors.

vLLM mixes ``ReadoutWorkerExtension`` into its worker class (engine argument ``worker_extension_cls``); its
methods are the RPC targets the frontend reaches through ``collective_rpc``. For each engine request the worker
keeps one ``[n_local_layers, n_concepts]`` row per computed position from the last prompt token on (the readout
of generated token k is the residual at position ``prompt_len - 1 + k``), until the frontend releases it.

Rows are keyed by absolute position, so chunked prefill, batching with other requests, and preemption (whose
recompute writes the same positions again) cannot shift or mix them. The true residual stream after a vLLM
decoder block is ``hidden_states + residual`` of the pair it returns. The projection is amygdala's own
``readout.project_readout``, the one the offline readout and amygdala's server call.
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

from amygdala_vllm.config import PluginConfigError

logger = logging.getLogger(__name__)
#: A request's rows are dropped this long after the engine forgot it, when no frontend released them (aborts).
STALE_AFTER_S = 300.0
Span = tuple[str, int, int, bool]  # engine request id, first position, number of positions, release afterwards


@dataclass(frozen=True)
class _Batch:
    """The flattened batch of the forward pass under way: request ``i`` owns rows ``starts[i]:starts[i + 1]``."""

    req_ids: list[str]
    starts: list[int]
    positions: list[int]
    keep_from: list[int]


class _Readouts:
    """The hooks of one worker and the rows they keep, per engine request and position."""

    def __init__(self, runner: Any, projector: Any, zscore: bool, local: list[int], key: tuple[str, str, bool]) -> None:
        self.runner = runner
        self.projector = projector
        self.zscore = zscore
        self.local = local
        self.key = key
        self.rows: dict[str, dict[int, torch.Tensor]] = {}
        self.touched: dict[str, float] = {}
        self.lock = threading.Lock()
        self.batch: _Batch | None = None
        self.step: dict[int, torch.Tensor] = {}
        self.in_execute = False
        self.last_sweep = time.monotonic()

    def execute_model(self, original: Callable[..., Any]) -> Callable[..., Any]:
        """Only forwards run for scheduled requests are read; dummy and profiling runs are not."""

        def execute_model(*args: Any, **kwargs: Any) -> Any:
            self.in_execute = True
            try:
                return original(*args, **kwargs)
            finally:
                self.in_execute, self.batch, self.step = False, None, {}

        return execute_model

    def before_forward(self, _module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if not self.in_execute or self.runner.input_batch.num_reqs == 0:
            return
        n_reqs = self.runner.input_batch.num_reqs
        starts = [int(s) for s in self.runner.query_start_loc.np[: n_reqs + 1]]
        positions = kwargs["positions"] if "positions" in kwargs else args[1]
        if positions.dim() == 2:  # M-RoPE: [3, n_tokens]; text positions are the first row
            positions = positions[0]
        req_ids = list(self.runner.input_batch.req_ids[:n_reqs])
        keep_from = [self.runner.requests[req_id].num_prompt_tokens - 1 for req_id in req_ids]
        assert positions.shape[0] >= starts[-1], f"forward has {positions.shape[0]} rows, batch needs {starts[-1]}"
        self.batch = _Batch(req_ids, starts, positions[: starts[-1]].tolist(), keep_from)
        self.step = {}
        self._sweep()

    def after_block(self, layer: int, deepest: bool) -> Callable[[nn.Module, object, object], None]:
        from amygdala.readout import project_readout

        index = self.projector.layers.index(layer)

        def hook(_module: nn.Module, _inputs: object, output: object) -> None:
            batch = self.batch
            if batch is None:
                return
            stream = _residual_stream(output)[: batch.starts[-1]]
            self.step[layer] = project_readout(stream, self.projector, index, zscore=self.zscore)
            if deepest:
                self._keep(batch)

        return hook

    def _keep(self, batch: _Batch) -> None:
        values = torch.stack([self.step[layer] for layer in self.local], dim=1).to("cpu")  # [n, L_local, C]
        now = time.monotonic()
        with self.lock:
            for i, req_id in enumerate(batch.req_ids):
                start, end = batch.starts[i], batch.starts[i + 1]
                rows = self.rows.setdefault(req_id, {})
                for row in range(start, end):
                    if batch.positions[row] >= batch.keep_from[i]:
                        rows[batch.positions[row]] = values[row].clone()
                self.touched[req_id] = now
        self.step = {}

    def take(self, spans: list[Span]) -> dict[str, Any]:
        """Each span's rows ``[count][n_local_layers][n_concepts]``, or the positions it lacks."""
        found: list[dict[str, list[Any]]] = []
        now = time.monotonic()
        with self.lock:
            for req_id, first, count, release in spans:
                rows = self.rows.get(req_id, {})
                wanted = range(first, first + count)
                missing = [position for position in wanted if position not in rows]
                if missing:
                    found.append({"missing": missing})
                else:
                    found.append({"values": [rows[position].tolist() for position in wanted]})
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


def _residual_stream(output: object) -> torch.Tensor:
    """vLLM decoder blocks return ``(hidden_states, residual)``; the residual stream after the block is their sum."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        residual = output[1] if len(output) > 1 else None
        if isinstance(residual, torch.Tensor) and residual.shape == output[0].shape:
            return output[0] + residual
        return output[0]
    raise TypeError(f"decoder block returned {type(output).__name__}; expected a tensor or (hidden, residual)")


def _check_runner(runner: Any) -> None:
    """Hooks do not fire inside torch.compile'd graphs or CUDA graphs, and drafts would be read as tokens."""
    from vllm.config import CompilationMode

    problems = []
    if not runner.model_config.enforce_eager or runner.compilation_config.mode != CompilationMode.NONE:
        problems.append("the engine is not in eager mode (forward hooks do not fire under torch.compile or CUDA "
                        "graphs): pass enforce_eager=True")
    if runner.speculative_config is not None:
        problems.append("speculative decoding is on: drop the speculative config")
    if problems:
        raise PluginConfigError("amygdala-vllm: " + "; ".join(problems))


def install(runner: Any, vectors: str, manifest: str, zscore: bool) -> _Readouts:
    """Load and fit-check the artifact, then hook the model this worker holds."""
    from amygdala.artifact import check_fits_model, load_artifact
    from amygdala.models import decoder_layers
    from amygdala.readout import projector_for
    from vllm.model_executor.models.utils import PPMissingLayer

    _check_runner(runner)
    model = runner.get_model()
    blocks = decoder_layers(model)
    artifact = load_artifact(vectors, manifest)
    check_fits_model(artifact, n_layers=len(blocks), hidden_size=runner.model_config.get_hidden_size(),
                     model_id=str(runner.model_config.model))
    device = next(model.parameters()).device
    local = [layer for layer in artifact.layers if not isinstance(blocks[layer], PPMissingLayer)]
    readouts = _Readouts(runner, projector_for(artifact, device), zscore, local, (vectors, manifest, zscore))
    runner.execute_model = readouts.execute_model(runner.execute_model)
    if local:
        model.register_forward_pre_hook(readouts.before_forward, with_kwargs=True)
        for layer in local:
            blocks[layer].register_forward_hook(readouts.after_block(layer, deepest=layer == max(local)))
    logger.info("amygdala-vllm: reading %d concepts at layers %s", len(artifact.concepts), local)
    return readouts


class ReadoutWorkerExtension:
    """RPC targets mixed into vLLM's worker; ``self.model_runner`` is the worker's model runner."""

    def amygdala_readout_install(self, vectors: str, manifest: str, zscore: bool) -> list[int]:
        """Hook the artifact's layers once; returns the layers this worker holds (all, or its pipeline stage's)."""
        current: _Readouts | None = getattr(self, "_amygdala_readouts", None)
        if current is None:
            current = install(self.model_runner, vectors, manifest, zscore)
            self._amygdala_readouts = current
        elif current.key != (vectors, manifest, zscore):
            raise PluginConfigError(f"amygdala-vllm: workers already read {current.key[0]}; restart vLLM to "
                                    f"read {vectors}")
        return current.local

    def amygdala_readout_take(self, spans: list[Span]) -> dict[str, Any]:
        return self._amygdala_readouts.take(spans)

    def amygdala_readout_release(self, req_ids: list[str]) -> None:
        self._amygdala_readouts.release(req_ids)
