"""Device and dtype resolution: cuda when available else cpu, bf16 on a GPU, rank-local GPUs, clear refusals."""

from __future__ import annotations

import pytest
import torch

from amygdala.forward.devices import DeviceError, default_dtype, describe, resolve_device, resolve_dtype
from amygdala.forward.distributed import World


def test_resolve_device_defaults_to_cuda_when_available_else_cpu() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(None).type == expected == resolve_device("auto").type
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="refusal of a missing GPU, on a machine without one")
def test_resolve_device_refuses_a_gpu_that_is_not_there() -> None:
    with pytest.raises(DeviceError, match="device 'cuda': no CUDA GPU is visible to torch here: use --device cpu"):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        resolve_device("cuda", World(rank=1, world_size=2, local_rank=1))


def test_resolve_device_refuses_a_name_torch_does_not_know() -> None:
    with pytest.raises(DeviceError, match="device 'gpu0' is not a torch device: use cpu, cuda, cuda:N or mps"):
        resolve_device("gpu0")


def test_dtype_defaults_to_bf16_on_a_gpu_and_fp32_on_a_cpu() -> None:
    assert default_dtype(torch.device("cuda", 0)) == "bfloat16"
    assert default_dtype(torch.device("cpu")) == "float32"
    assert resolve_dtype(None, torch.device("cpu")) == "float32"
    assert resolve_dtype("fp16", torch.device("cpu")) == "float16"
    assert describe(torch.device("cpu")) == "cpu"
