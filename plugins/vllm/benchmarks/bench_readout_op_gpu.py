"""The readout op captured in a CUDA graph on a decoder stack of real shape, against the bare step (torch only).

Where vLLM cannot be installed on a GPU, this measures what the plugin adds to a compiled, graph-captured decode
step: the stack has Qwen3-32B's shape (hidden 5120, 64 layers, 64 query / 8 KV heads of 128, MLP 25600, bf16;
attention is stood in for by its projections, which dominate decode), and vLLM's block convention (each block
returns ``(hidden, residual)``). Variants, each captured as one ``torch.cuda.CUDAGraph`` and replayed:

- ``bare``: the stack alone;
- ``readout``: the stack with ``amygdala::readout_into`` after 4 blocks (171 concepts), writing the persistent buffer;
- ``readout_copy``: ``readout`` plus what the plugin does after each step outside the graph: gather the sampled rows
  and one non-blocking copy to pinned host memory.

The buffer written by the replayed graph is checked against an eager projection. ``--device cpu --tiny`` is a
smoke test (no graphs; a tiny stack). The last line is one JSON object:

    python plugins/vllm/benchmarks/bench_readout_op_gpu.py [--device cuda] [--tokens 1,16] [--iters 200] [--tiny]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from amygdala_vllm.readout_op import readout_buffer  # noqa: E402  (the op module; torch only)

N_CONCEPTS = 171
GOAL_PCT = 1.0


@dataclass(frozen=True)
class Shape:
    hidden: int
    layers: int
    q_heads: int
    kv_heads: int
    head_dim: int
    intermediate: int


QWEN3_32B = Shape(hidden=5120, layers=64, q_heads=64, kv_heads=8, head_dim=128, intermediate=25600)
TINY = Shape(hidden=64, layers=4, q_heads=4, kv_heads=2, head_dim=16, intermediate=128)


@dataclass(frozen=True)
class Layer:
    qkv: torch.Tensor
    o: torch.Tensor
    gate_up: torch.Tensor
    down: torch.Tensor


def _stack(shape: Shape, dtype: torch.dtype, device: str) -> list[Layer]:
    q_dim, kv_dim = shape.q_heads * shape.head_dim, shape.kv_heads * shape.head_dim

    def weight(rows: int, cols: int) -> torch.Tensor:
        return torch.randn(rows, cols, dtype=dtype, device=device) * rows ** -0.5

    return [Layer(weight(shape.hidden, q_dim + 2 * kv_dim), weight(q_dim, shape.hidden),
                  weight(shape.hidden, 2 * shape.intermediate), weight(shape.intermediate, shape.hidden))
            for _ in range(shape.layers)]


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6).to(x.dtype)


def _block(layer: Layer, hidden: torch.Tensor, residual: torch.Tensor, q_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    residual = hidden + residual
    attention = (_rms(residual) @ layer.qkv)[:, :q_dim]  # stand-in for attention: same shapes, no KV cache
    residual = attention @ layer.o + residual
    gate, up = (_rms(residual) @ layer.gate_up).chunk(2, dim=-1)
    return (torch.nn.functional.silu(gate) * up) @ layer.down, residual


def _step(stack: list[Layer], q_dim: int, reads: dict[int, tuple[int, torch.Tensor]], buffer: torch.Tensor | None
          ) -> Callable[[torch.Tensor], torch.Tensor]:
    def step(x: torch.Tensor) -> torch.Tensor:
        hidden, residual = x, torch.zeros_like(x)
        for index, layer in enumerate(stack):
            hidden, residual = _block(layer, hidden, residual, q_dim)
            if buffer is not None and index in reads:
                slot, vectors = reads[index]
                torch.ops.amygdala.readout_into(hidden, residual, vectors, buffer, slot)
        return hidden + residual

    return step


def _timed(run: Callable[[], object], iters: int, device: str) -> float:
    """Mean ms per call over ``iters`` calls after a warm-up (CUDA events on a GPU)."""
    for _ in range(3):
        run()
    if device == "cuda":
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            run()
        end.record()
        torch.cuda.synchronize()
        return float(start.elapsed_time(end)) / iters
    begin = time.perf_counter()
    for _ in range(iters):
        run()
    return (time.perf_counter() - begin) * 1e3 / iters


def _replayable(step: Callable[[torch.Tensor], torch.Tensor], static_in: torch.Tensor, device: str
                ) -> Callable[[], object]:
    if device != "cuda":
        return lambda: step(static_in)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            step(static_in)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step(static_in)
    return graph.replay


def _measure(stack: list[Layer], shape: Shape, tokens: int, iters: int, dtype: torch.dtype, device: str
             ) -> dict[str, float]:
    q_dim = shape.q_heads * shape.head_dim
    read_layers = sorted({round(shape.layers * f) for f in (0.25, 0.5, 0.75)} | {shape.layers - 1})
    generator = torch.Generator(device=device).manual_seed(0)
    reads = {layer: (slot, torch.nn.functional.normalize(
        torch.randn(N_CONCEPTS, shape.hidden, device=device, generator=generator), dim=-1))
        for slot, layer in enumerate(read_layers)}
    buffer = readout_buffer(len(read_layers), max(tokens, 16), N_CONCEPTS, device)
    static_in = torch.randn(tokens, shape.hidden, dtype=dtype, device=device, generator=generator)
    bare = _replayable(_step(stack, q_dim, reads, None), static_in, device)
    readout = _replayable(_step(stack, q_dim, reads, buffer), static_in, device)
    rows = torch.arange(tokens, device=device)
    host = torch.empty(len(read_layers), tokens, N_CONCEPTS, pin_memory=device == "cuda")

    def readout_copy() -> None:
        readout()
        host.copy_(buffer.index_select(1, rows), non_blocking=True)

    times = {"bare_ms": _timed(bare, iters, device), "readout_ms": _timed(readout, iters, device),
             "readout_copy_ms": _timed(readout_copy, iters, device)}
    _check(stack, q_dim, reads, buffer, static_in, readout)
    return {**{k: round(v, 4) for k, v in times.items()},
            "readout_overhead_pct": round(100 * (times["readout_ms"] / times["bare_ms"] - 1), 3),
            "readout_copy_overhead_pct": round(100 * (times["readout_copy_ms"] / times["bare_ms"] - 1), 3)}


def _check(stack: list[Layer], q_dim: int, reads: dict[int, tuple[int, torch.Tensor]], buffer: torch.Tensor,
           static_in: torch.Tensor, replay: Callable[[], object]) -> None:
    """The replayed graph's buffer equals an eager projection of the same residual stream."""
    buffer.zero_()
    replay()
    if static_in.device.type == "cuda":
        torch.cuda.synchronize()
    hidden, residual = static_in, torch.zeros_like(static_in)
    for index, layer in enumerate(stack):
        hidden, residual = _block(layer, hidden, residual, q_dim)
        if index in reads:
            slot, vectors = reads[index]
            expected = (hidden + residual).float() @ vectors.T
            got = buffer[slot, : static_in.shape[0]]
            scale = expected.abs().max().clamp_min(1e-6)
            assert float((got - expected).abs().max() / scale) < 1e-2, f"layer {index}: graph readout differs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--tiny", action="store_true", help="tiny stack (smoke test)")
    parser.add_argument("--tokens", default="1,16", help="decode batch sizes (tokens per step), comma-separated")
    parser.add_argument("--iters", type=int, default=200)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device visible (use --device cpu --tiny for a smoke test)")
    shape = TINY if args.tiny else QWEN3_32B
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.inference_mode():
        stack = _stack(shape, dtype, args.device)
        results = {f"tokens_{n}": _measure(stack, shape, n, args.iters, dtype, args.device)
                   for n in (int(t) for t in args.tokens.split(","))}
    print(json.dumps({"bench": "readout_op_cuda_graph", "device": args.device,
                      "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
                      "torch": torch.__version__, "shape": "tiny" if args.tiny else "qwen3-32b",
                      "hidden": shape.hidden, "layers": shape.layers, "concepts": N_CONCEPTS, "read_layers": 4,
                      "dtype": str(dtype).removeprefix("torch."), "cuda_graphs": args.device == "cuda",
                      "goal_pct": GOAL_PCT, **results}))


if __name__ == "__main__":
    main()
