"""Which device and forward dtype a command runs on: ``cuda`` when one is available, else the CPU; bf16 on a GPU,
fp32 on a CPU. In a data-parallel run (torchrun) each rank takes the GPU of its ``LOCAL_RANK``."""

from __future__ import annotations

import torch

from amygdala.errors import AmygdalaError
from amygdala.forward.distributed import rank_device
from amygdala.forward.launcher import SINGLE, World
from amygdala.forward.models import DtypeName, canonical_dtype


class DeviceError(AmygdalaError):
    """The requested device does not exist here."""


def _check_available(device: torch.device, requested: str) -> None:
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(f"device {requested!r}: no CUDA GPU is visible to torch here: use --device cpu")
        if device.index is not None and device.index >= count:
            raise DeviceError(f"device {requested!r}: only {count} CUDA GPU(s) are visible (cuda:0..cuda:{count - 1})")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"device {requested!r}: MPS is not available here: use --device cpu")


def resolve_device(requested: str | None, world: World = SINGLE) -> torch.device:
    """``requested`` (None or ``auto``: ``cuda`` if available, else ``cpu``) as a checked ``torch.device``,
    made rank-local in a data-parallel run."""
    name = "cuda" if requested in (None, "", "auto") and torch.cuda.is_available() else requested
    name = "cpu" if name in (None, "", "auto") else name
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"device {requested!r} is not a torch device: use cpu, cuda, cuda:N or mps") from None
    device = rank_device(world, device)
    _check_available(device, str(requested))
    return device


def default_dtype(device: torch.device) -> DtypeName:
    """bf16 on GPUs (the matmul units' native precision), fp32 elsewhere (CPUs gain little from bf16)."""
    return "bfloat16" if device.type == "cuda" else "float32"


def resolve_dtype(requested: str | None, device: torch.device) -> DtypeName:
    return canonical_dtype(requested) if requested else default_dtype(device)


def describe(device: torch.device) -> str:
    """``cuda:0 (NVIDIA H200)`` or ``cpu``, for progress output."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return str(device)
