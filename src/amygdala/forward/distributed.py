"""Data parallelism over torch.distributed: one process per device, launched by ``torchrun`` or ``accelerate launch``.

``torchrun --standalone --nproc-per-node N --no-python amygdala train ...`` starts N copies of the command with
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` set (``accelerate launch`` sets the same; ``launcher.world_from_env``
reads them). Each rank loads the model on its own device (``cuda:LOCAL_RANK``, or the CPU), forwards a disjoint
shard of the unique texts (every N-th forward batch of the single-process plan, so each rank forwards exactly the
batches a single process would), and the ranks then sum their statistics with ``all_gather`` in rank order 0, 1,
..., N-1: a fixed order, so a rerun gives the same bits. The backend is NCCL on GPUs and gloo on CPUs. Only rank 0
writes files.

A rank that fails exits non-zero; torchrun then stops the others, which are waiting in a collective, so the run
fails as a whole and rank 0 never writes an artifact.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import timedelta

import torch
import torch.distributed as dist

from amygdala.forward.launcher import SINGLE, DistributedError, World, world_from_env

_CHUNK_BYTES = 64 << 20  # all_gather holds world_size chunks of this size at once, whatever the tensor's size


def rank_device(world: World, device: torch.device) -> torch.device:
    """Each rank's device: ``cuda`` -> ``cuda:LOCAL_RANK`` in a parallel run; anything else unchanged."""
    if world.is_parallel and device.type == "cuda" and device.index is None:
        return torch.device("cuda", world.local_rank)
    return device


def join(world: World, device: torch.device, timeout_minutes: float = 30.0) -> None:
    """Join the process group (NCCL on GPUs, gloo otherwise) unless single or already joined."""
    if not world.is_parallel or dist.is_initialized():
        return
    timeout = timedelta(minutes=timeout_minutes)
    if device.type == "cuda":  # NCCL, bound to this rank's GPU from the start
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", rank=world.rank, world_size=world.world_size, timeout=timeout,
                                device_id=device)
    else:
        dist.init_process_group("gloo", rank=world.rank, world_size=world.world_size, timeout=timeout)


def leave() -> None:
    """Leave the process group, if joined (at the end of a command)."""
    if dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def joined(world: World, device: torch.device) -> Iterator[None]:
    """In the process group for the duration of a command (nothing to do in a single process)."""
    join(world, device)
    try:
        yield
    finally:
        leave()


def barrier(world: World) -> None:
    """Wait until every rank gets here (nothing to wait for in a single process)."""
    if world.is_parallel:
        dist.barrier()


def sum_in_rank_order(world: World, tensors: Sequence[torch.Tensor], *,
                      chunk_bytes: int = _CHUNK_BYTES) -> list[torch.Tensor]:
    """Each tensor summed over the ranks in the fixed order 0, 1, ..., N-1; the sums on every rank.

    All ranks pass tensors of the same shapes and dtypes. Gathered ``chunk_bytes`` at a time, so the extra
    memory is ``world_size x chunk_bytes`` whatever the tensors' size.
    """
    if not world.is_parallel:
        return [tensor.clone() for tensor in tensors]
    return [_sum_one(world, tensor, chunk_bytes) for tensor in tensors]


def _sum_one(world: World, tensor: torch.Tensor, chunk_bytes: int) -> torch.Tensor:
    flat = tensor.contiguous().reshape(-1)
    if flat.numel() == 0:
        return tensor.clone()
    out = torch.empty_like(flat)
    step = max(1, chunk_bytes // flat.element_size())
    wire = _wire_device(tensor.device)
    for start in range(0, flat.numel(), step):
        part = flat[start:start + step].to(wire)
        gathered = [torch.empty_like(part) for _ in range(world.world_size)]
        dist.all_gather(gathered, part)
        total = gathered[0].clone()
        for other in gathered[1:]:
            total += other
        out[start:start + step] = total.to(out.device)
    return out.reshape(tensor.shape)


def _wire_device(device: torch.device) -> torch.device:
    """NCCL moves only GPU tensors: CPU tensors travel through this rank's GPU; gloo takes them as they are."""
    if dist.get_backend() == "nccl" and device.type != "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return device


def check_same_inputs(world: World, what: str, fields: Mapping[str, object]) -> None:
    """Raise on every rank when the ranks were given different inputs (data, model, options): a data-parallel
    run over different data would silently mix them. ``fields`` must be JSON-serialisable."""
    if not world.is_parallel:
        return
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()
    everyone: list[str | None] = [None] * world.world_size
    dist.all_gather_object(everyone, digest)
    differ = [rank for rank, other in enumerate(everyone) if other != everyone[0]]
    if differ:
        raise DistributedError(f"rank(s) {differ} were given other {what} than rank 0: every rank must run the same "
                               "command on the same files")


__all__ = ["SINGLE", "DistributedError", "World", "barrier", "check_same_inputs", "join", "joined", "leave",
           "rank_device", "sum_in_rank_order", "world_from_env"]
