"""torch.distributed helpers and the data-parallel commands, run for real: 2 CPU processes on gloo, launched by
torchrun and by accelerate launch, on the embedded model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from amygdala.forward.distributed import SINGLE, DistributedError, World, rank_device, sum_in_rank_order, world_from_env
from amygdala.forward.models import LoadedModel
from amygdala.outputs.atomic import output_lock

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


# ---- The commands, data-parallel for real: 2 CPU processes (gloo) on the embedded Gemma 3 270M ----------------

EMOTIONS = ("warmth", "clarity", "anxious")


def _launch(launcher: list[str], command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-m", *launcher, *command], capture_output=True, text=True,
                          timeout=900, env=env, cwd=cwd)


TORCHRUN = ["torch.distributed.run", "--standalone", "--nproc-per-node=2", "--no-python"]
ACCELERATE = ["accelerate.commands.launch", "--multi_gpu", "--num_processes=2", "--num_machines=1",
              "--mixed_precision=no", "--dynamo_backend=no", "--no_python"]


@pytest.fixture(scope="module")
def examples_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small extract of the bundled sample: 3 emotions, at most 24 examples each (about 60 unique texts)."""
    from amygdala.extraction.scoring import ExtractOptions
    from amygdala.extraction.sources.graph_file import bundled_sample_path, read_graph_file
    from amygdala.extraction.stage import extract

    folder = tmp_path_factory.mktemp("dp") / "examples"
    extract(read_graph_file(bundled_sample_path()), ExtractOptions(emotions=EMOTIONS, max_examples_per_emotion=24),
            folder, "bundled sample", force=True)
    return folder


@pytest.fixture(scope="module")
def single_and_parallel(examples_dir: Path, gemma: LoadedModel) -> tuple[Path, Path, str]:
    """The same training run in one process and under ``torchrun --nproc-per-node 2`` (the real CLI)."""
    from amygdala.pipeline import train_files

    root = examples_dir.parent
    train_files(examples_dir, root / "single" / "readout.safetensors", model=gemma)
    done = _launch(TORCHRUN, ["amygdala", "train", "--training-data-dir", str(examples_dir), "--output",
                              str(root / "parallel" / "readout.safetensors"), "--no-progress"], root)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "single" / "readout.safetensors", root / "parallel" / "readout.safetensors", done.stdout


@pytest.mark.slow
def test_torchrun_train_equals_a_single_process_run(single_and_parallel: tuple[Path, Path, str]) -> None:
    from amygdala.artifact import load_artifact

    single, parallel, stdout = single_and_parallel
    one, two = load_artifact(single), load_artifact(parallel)
    assert (one.concepts, one.layers) == (two.concepts, two.layers)
    for layer in one.layers:
        cosines = torch.nn.functional.cosine_similarity(one.vectors[layer].double(), two.vectors[layer].double(),
                                                        dim=1)
        assert cosines.min() >= 0.999999, (layer, cosines)
    manifests = [json.loads(path.with_suffix(".json").read_text()) for path in (single, parallel)]
    assert manifests[1]["training"].pop("world_size") == 2 and "world_size" not in manifests[0]["training"]
    manifests[0].pop("vectors_sha256"), manifests[1].pop("vectors_sha256")
    calibrations = [manifest.pop("calibration") for manifest in manifests]
    assert manifests[0] == manifests[1], "the manifest differs only in the world size (and float rounding)"
    for key, table in calibrations[0].items():
        for name in ("mean", "std"):
            torch.testing.assert_close(torch.tensor(calibrations[1][key][name]), torch.tensor(table[name]))
    assert stdout.count("trained 3 concepts") == 1, "rank 0 alone reports"
    assert "data-parallel over 2 ranks" in stdout and "forward on cpu" in stdout


@pytest.mark.slow
def test_accelerate_launch_eval_equals_a_single_process_eval(examples_dir: Path, gemma: LoadedModel,
                                                             single_and_parallel: tuple[Path, Path, str]) -> None:
    from amygdala.pipeline import evaluate_files

    single, _, _ = single_and_parallel
    root = examples_dir.parent
    alone = evaluate_files(single, examples_dir, root / "report-single", model=gemma, n_texts=1)
    done = _launch(ACCELERATE, ["amygdala", "eval", "--vectors", str(single), "--training-data-dir",
                                str(examples_dir), "--report-dir", str(root / "report-parallel"), "--no-progress"],
                   root)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((root / "report-parallel" / "report.json").read_text())
    summary = alone.evaluation.summary()
    for name in ("mean_auroc", "min_auroc", "top1", "top3", "mean_stability", "n_heldout_texts"):
        assert report["summary"][name] == pytest.approx(summary[name], abs=1e-6), name
    assert done.stdout.count("report: ") == 1, "rank 0 alone writes and reports"


@pytest.mark.slow
def test_a_failing_rank_fails_the_whole_run_without_an_artifact(examples_dir: Path) -> None:
    """Rank 1 cannot load its model (as on a node without the weights): the run fails with rank 1's one-line
    error, rank 0 is stopped while it waits for rank 1, and nothing is written (the lock file rank 0 held may
    stay behind, released: the next run takes it)."""
    root = examples_dir.parent / "failing"
    root.mkdir()
    train = f"amygdala train --training-data-dir {examples_dir} --output {root / 'readout.safetensors'} --no-progress"
    script = f'if [ "$RANK" = 1 ]; then exec {train} --model {root / "missing"}; else exec {train}; fi'
    done = _launch(TORCHRUN, ["bash", "-c", script], root)
    assert done.returncode != 0
    assert f"amygdala: error: [rank 1 of 2] model '{root / 'missing'}' does not exist" in done.stderr
    assert [path.name for path in root.iterdir()] in ([], [".readout.safetensors.lock"]), "no artifact"
    with output_lock(root / "readout.safetensors"):  # the killed rank 0's output lock died with it
        pass
