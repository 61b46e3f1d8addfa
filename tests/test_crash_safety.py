"""Crash safety: `amygdala train --cache-dir` killed with SIGKILL mid-run resumes from its cache, and the resumed
artifact is byte-identical to an uninterrupted run's (same examples, options, seed and dtype).

The kill lands at a seeded random chunk count: the subprocess is watched until that many activation-cache chunks
exist, then killed without warning, so whatever it was doing (a forward pass, a chunk half-written to its temp
file) is cut off. SmolLM2 with two shallow layers keeps each batch short but real.
"""

from __future__ import annotations

import hashlib
import math
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from amygdala.artifact import save_artifact
from amygdala.cli import main
from amygdala.extraction.examples import read_examples
from amygdala.forward.models import LoadedModel
from amygdala.forward.pooling import PoolingSpec
from amygdala.training.lexical import hard_negative_data
from amygdala.training.stage import TrainOptions, train, training_texts

pytestmark = pytest.mark.slow
SEED = 6
LAYERS, BATCH = (2, 5), 2
TRAIN_ARGS = ["--model", "smollm2", "--target-layers", "2,5", "--batch-size", str(BATCH), "--pooling", "mean",
              "--no-progress"]


def chunks(cache_dir: Path) -> dict[str, str]:
    """Complete cache chunks (temp files excluded) -> sha256 of their bytes."""
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(cache_dir.glob("*/chunk-*.safetensors"))}


def count_chunks(cache_dir: Path) -> int:
    return sum(1 for _ in cache_dir.glob("*/chunk-*.safetensors"))


@pytest.fixture(scope="module")
def examples_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("crash") / "examples"
    assert main(["extract", "--output-dir", str(folder), "--emotions", "calm,warmth,proud",
                 "--max-examples-per-emotion", "16"]) == 0
    return folder


@pytest.fixture(scope="module")
def uninterrupted(smollm2: LoadedModel, examples_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: the same training through the Python API, in one go and without a cache."""
    output = tmp_path_factory.mktemp("reference") / "readout.safetensors"
    artifact = train(smollm2, read_examples(examples_dir), TrainOptions(target_layers=LAYERS,
                                                                       pooling=PoolingSpec("mean"), batch_size=BATCH))
    save_artifact(artifact, output)
    return output


def _start_train(examples_dir: Path, output: Path, cache_dir: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "amygdala.cli", "train", "--training-data-dir", str(examples_dir), "--output",
            str(output), "--cache-dir", str(cache_dir), *TRAIN_ARGS]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _kill_after(process: subprocess.Popen[bytes], cache_dir: Path, n_chunks: int, timeout_s: float = 240) -> None:
    """SIGKILL ``process`` as soon as ``n_chunks`` cache chunks exist."""
    deadline = time.monotonic() + timeout_s
    while count_chunks(cache_dir) < n_chunks:
        if process.poll() is not None:
            stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
            pytest.fail(f"train ended (exit {process.returncode}) before {n_chunks} chunks were written: {stderr}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"train wrote fewer than {n_chunks} chunks in {timeout_s} s")
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def test_train_killed_mid_run_resumes_to_a_byte_identical_artifact(examples_dir: Path, uninterrupted: Path,
                                                                   tmp_path: Path) -> None:
    n_texts = len(training_texts(read_examples(examples_dir)).texts)
    n_batches = math.ceil(n_texts / BATCH)
    assert n_batches >= 8, "too few batches to kill the run in the middle"
    kill_at = random.Random(SEED).randint(2, n_batches - 3)
    output, cache_dir = tmp_path / "out" / "readout.safetensors", tmp_path / "cache"

    killed = _start_train(examples_dir, output, cache_dir)
    _kill_after(killed, cache_dir, kill_at)
    assert killed.returncode == -signal.SIGKILL
    survived = chunks(cache_dir)
    assert kill_at <= len(survived) < n_batches
    assert not output.exists() and not output.with_suffix(".json").exists()  # no artifact from the killed run

    rerun = subprocess.run([sys.executable, "-m", "amygdala.cli", "train", "--training-data-dir", str(examples_dir),
                            "--output", str(output), "--cache-dir", str(cache_dir), *TRAIN_ARGS],
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    after = chunks(cache_dir)
    assert {name: after[name] for name in survived} == survived  # cached chunks reused, not rewritten
    forwarded = len(after) - len(survived)
    # The rest of the train texts, then the lexical hard negatives (the default remedy), pooled after them.
    examples = read_examples(examples_dir)
    n_hard = len(hard_negative_data(sorted({example.emotion for example in examples})).texts)
    missing = math.ceil((n_texts - len(survived) * BATCH) / BATCH)
    assert forwarded == missing + math.ceil(n_hard / BATCH) and missing < n_batches
    print(f"\nkilled after {len(survived)} of {n_batches} batches; the rerun forwarded {forwarded} batches")

    assert output.read_bytes() == uninterrupted.read_bytes()
    assert output.with_suffix(".json").read_bytes() == uninterrupted.with_suffix(".json").read_bytes()
