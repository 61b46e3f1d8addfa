"""The readout as a ``torch.library`` custom op, so torch.compile traces it and CUDA graphs capture it.

``amygdala::readout_into(hidden, residual, vectors, buffer, slot)`` writes ``(hidden + residual) @ vectors.T`` (fp32)
into ``buffer[slot, :n_tokens]`` of a persistent, preallocated ``buffer [n_layers, max_tokens, n_concepts]``.
The op mutates only ``buffer`` (declared, so functionalization keeps the write) and returns nothing. Dynamo inlines
forward hooks registered before compilation, so a hook calling this op puts it into the traced graph; vLLM's
compiler treats it like any other op that is not a splitting op (it stays inside the piecewise graphs and their CUDA
graphs). The buffer's address never changes, which is what CUDA-graph replay needs.

torch-only on purpose: ``benchmarks/bench_readout_op_gpu.py`` imports it without vLLM.
"""

from __future__ import annotations

import torch

OP_NAME = "amygdala::readout_into"


@torch.library.custom_op(OP_NAME, mutates_args=("buffer",))
def readout_into(hidden: torch.Tensor, residual: torch.Tensor | None, vectors: torch.Tensor, buffer: torch.Tensor,
                 slot: int) -> None:
    """``buffer[slot, :n] = (hidden[:n] + residual[:n]).float() @ vectors.T``, ``n = min(rows, buffer rows)``;
    the sum is taken in the model's dtype, as amygdala's offline readout sees the residual stream."""
    n_tokens = min(hidden.shape[0], buffer.shape[1])
    stream = hidden[:n_tokens] if residual is None else hidden[:n_tokens] + residual[:n_tokens]
    torch.matmul(stream.float(), vectors.T, out=buffer[slot, :n_tokens])


@readout_into.register_fake
def _readout_into_fake(hidden: torch.Tensor, residual: torch.Tensor | None, vectors: torch.Tensor, buffer: torch.Tensor,
                       slot: int) -> None:
    return None


def readout_buffer(n_layers: int, max_tokens: int, n_concepts: int, device: torch.device | str) -> torch.Tensor:
    """The persistent output buffer ``[n_layers, max_tokens, n_concepts]`` (fp32, zeroed)."""
    return torch.zeros(n_layers, max_tokens, n_concepts, dtype=torch.float32, device=device)
