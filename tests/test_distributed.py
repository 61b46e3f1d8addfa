"""torch.distributed helpers, run for real: 2 processes on gloo launched by torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from amygdala.distributed import SINGLE, DistributedError, World, rank_device, sum_in_rank_order, world_from_env

WORKER = Path(__file__).with_name("distributed_worker.py")
sys.path.insert(0, str(WORKER.parent))
from distributed_worker import rank_tensors  # noqa: E402


def _torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess[str]:
    """``torchrun --standalone`` (as the module, so the test's interpreter runs it) over the worker script."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               str(WORKER), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, env=env)


def test_world_from_env_reads_the_launcher_variables() -> None:
    assert world_from_env({}) == SINGLE
    world = world_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (world.rank, world.world_size, world.local_rank, world.is_parallel, world.is_main) == (3, 4, 1, True, False)
    assert world.shard(list(range(10))) == [3, 7]


@pytest.mark.parametrize("environ", [{"RANK": "2", "WORLD_SIZE": "2"}, {"WORLD_SIZE": "two"}, {"WORLD_SIZE": "0"}])
def test_world_from_env_refuses_inconsistent_variables(environ: dict[str, str]) -> None:
    with pytest.raises(DistributedError, match="RANK|WORLD_SIZE"):
        world_from_env(environ)


def test_rank_device_gives_each_rank_its_own_gpu() -> None:
    world = World(rank=5, world_size=8, local_rank=1)
    assert rank_device(world, torch.device("cuda")) == torch.device("cuda", 1)
    assert rank_device(world, torch.device("cuda", 0)) == torch.device("cuda", 0)
    assert rank_device(world, torch.device("cpu")) == torch.device("cpu")
    assert rank_device(SINGLE, torch.device("cuda")) == torch.device("cuda")


def test_sum_in_rank_order_single_process_is_a_copy() -> None:
    tensors = rank_tensors(0)
    sums = sum_in_rank_order(SINGLE, tensors)
    assert all(torch.equal(a, b) and a is not b for a, b in zip(sums, tensors))


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """What rank 0 of a real 2-process gloo run saw (one torchrun launch for all the checks below)."""
    out = tmp_path_factory.mktemp("two-ranks") / "result.json"
    done = _torchrun(str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(out.read_text())


def test_sum_in_rank_order_over_two_gloo_processes_equals_the_rank_ordered_sum(two_ranks: dict) -> None:
    expected = rank_tensors(0)[0] + rank_tensors(1)[0]  # rank 0 first, then rank 1: the same bits
    assert two_ranks["world"] == [0, 2]
    assert torch.equal(torch.tensor(two_ranks["values"], dtype=torch.float64), expected.flatten())
    assert two_ranks["counts"] == [0, 3, 6, 9, 12]
    assert two_ranks["empty"] == [0]


def test_check_same_inputs_passes_when_ranks_agree(two_ranks: dict) -> None:
    assert two_ranks["same_error"] is None


def test_check_same_inputs_names_the_rank_given_other_data(two_ranks: dict) -> None:
    assert two_ranks["differ_error"] == (
        "rank(s) [1] were given other training data than rank 0: every rank must run the same command on the "
        "same files")
