"""Run by each rank of the 2-process gloo test in test_distributed.py (``torchrun ... distributed_worker.py OUT``):
sums seeded per-rank tensors in rank order and checks inputs that agree and that differ; rank 0 writes what it
saw to OUT as JSON."""

from __future__ import annotations

import json
import sys

import torch

from amygdala.forward.distributed import (
    DistributedError,
    World,
    check_same_inputs,
    join,
    leave,
    sum_in_rank_order,
    world_from_env,
)


def rank_tensors(rank: int) -> list[torch.Tensor]:
    """Per-rank data: fp64 values of mixed magnitude (so the summation order shows in the bits) and int64 counts."""
    generator = torch.Generator().manual_seed(rank)
    values = torch.randn(3, 50, 7, generator=generator, dtype=torch.float64) * 10.0 ** torch.arange(7)
    return [values, torch.arange(5, dtype=torch.int64) * (rank + 1), torch.zeros(0)]


def _check(world: World, same: bool) -> str | None:
    try:
        check_same_inputs(world, "training data", {"data": "same" if same else world.rank})
    except DistributedError as exc:
        return str(exc)
    return None


def main(out: str) -> None:
    world = world_from_env()
    join(world, torch.device("cpu"))
    try:
        sums = sum_in_rank_order(world, rank_tensors(world.rank), chunk_bytes=1000)
        result = {"world": [world.rank, world.world_size], "values": sums[0].flatten().tolist(),
                  "counts": sums[1].tolist(), "empty": list(sums[2].shape),
                  "same_error": _check(world, True), "differ_error": _check(world, False)}
        if world.is_main:
            with open(out, "w", encoding="utf-8") as handle:
                json.dump(result, handle)
    finally:
        leave()


if __name__ == "__main__":
    main(sys.argv[1])
