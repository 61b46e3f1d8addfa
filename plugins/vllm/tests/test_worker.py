"""The readout op and the worker's row selection, without an engine (the engine tests cover them end to end)."""

from __future__ import annotations

import torch

from amygdala_vllm.readout_op import readout_buffer
from amygdala_vllm.worker import reports, sampled_rows


def _blocks(hidden: torch.Tensor, residual: torch.Tensor, vectors: torch.Tensor, buffer: torch.Tensor) -> torch.Tensor:
    """Two toy 'decoder blocks' whose outputs are read at slots 0 and 1, as the plugin's hooks do."""
    for slot in range(2):
        hidden, residual = torch.tanh(hidden), hidden + residual
        torch.ops.amygdala.readout_into(hidden, residual, vectors[slot], buffer, slot)
    return hidden + residual


def test_readout_op_writes_the_projection_in_place_eager_and_compiled() -> None:
    """The compiled graph (dynamic token counts) writes the same values into the same persistent buffer as eager
    execution: the op is traced, not dropped, and functionalization does not redirect the write to a copy."""
    generator = torch.Generator().manual_seed(0)
    vectors = torch.nn.functional.normalize(torch.randn(2, 3, 16, generator=generator), dim=-1)
    eager, compiled = readout_buffer(2, 32, 3, "cpu"), readout_buffer(2, 32, 3, "cpu")
    address = compiled.data_ptr()
    step = torch.compile(_blocks, dynamic=True)
    for n_tokens in (5, 9, 1):
        hidden, residual = torch.randn(n_tokens, 16, generator=generator), torch.randn(n_tokens, 16, generator=generator)
        expected_out = _blocks(hidden, residual, vectors, eager)
        torch.testing.assert_close(step(hidden, residual, vectors, compiled), expected_out)
        torch.testing.assert_close(compiled[:, :n_tokens], eager[:, :n_tokens])
        stream = torch.tanh(hidden) + hidden + residual  # the residual stream after toy block 0
        torch.testing.assert_close(compiled[0, :n_tokens], stream @ vectors[0].T)
    assert compiled.data_ptr() == address


def test_sampled_rows_are_each_requests_last_row_once_its_prompt_is_done() -> None:
    """Request 0 decodes (1 row at position 9), request 1 is mid-prompt (chunked prefill: samples nothing),
    request 2 finishes its prompt (last row samples generated token 0 at position prompt_len - 1)."""
    starts = [0, 1, 5, 12]
    computed = [9, 0, 4]
    keep_from = [5, 10, 10]
    assert sampled_rows(starts, computed, keep_from) == [(0, 0, 9), (2, 11, 10)]


def test_only_tensor_parallel_rank_zero_reports() -> None:
    assert [reports(rank) for rank in range(4)] == [True, False, False, False]
