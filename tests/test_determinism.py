"""Determinism: the same inputs and seed give byte-identical extract outputs and artifacts across runs.

Each run is its own `amygdala` process, with a different ``PYTHONHASHSEED`` (set and dict-of-str ordering) and,
for training, a different number of torch threads, so nothing may depend on the process it ran in.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from amygdala.cli import main


def run_cli(*argv: str, hash_seed: int, threads: int = 1) -> None:
    env = {**os.environ, "PYTHONHASHSEED": str(hash_seed), "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, "-m", "amygdala.cli", *argv], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr


def digests(folder: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The bundled sample extracted three times: twice with seed 3 in differently seeded processes, once with 4."""
    root = tmp_path_factory.mktemp("determinism")
    runs = {"first": (3, 0), "second": (3, 98765), "other_seed": (4, 0)}
    for name, (seed, hash_seed) in runs.items():
        run_cli("extract", "--output-dir", str(root / name), "--seed", str(seed), "--heldout-fraction", "0.25",
                hash_seed=hash_seed)
    return {name: root / name for name in runs}


def test_extract_outputs_are_byte_identical_across_processes(extracted: dict[str, Path]) -> None:
    first = digests(extracted["first"])
    assert len(first) >= 17 and "extract.json" in first
    assert digests(extracted["second"]) == first


def test_extract_seed_changes_the_split_so_the_comparison_can_fail(extracted: dict[str, Path]) -> None:
    def heldout(folder: Path) -> set[str]:
        return {row["key"] for path in folder.glob("*.jsonl") for row in map(json.loads, path.read_text().splitlines())
                if row["split"] == "heldout"}

    assert heldout(extracted["first"]) != heldout(extracted["other_seed"])


@pytest.mark.slow
def test_train_artifact_is_byte_identical_across_processes_and_thread_counts(tmp_path: Path) -> None:
    examples = tmp_path / "examples"  # two emotions, capped: few forwards
    assert main(["extract", "--output-dir", str(examples), "--emotions", "calm,warmth",
                 "--max-examples-per-emotion", "20"]) == 0
    outputs = []
    for hash_seed, threads in ((1, 1), (2, 2)):
        output = tmp_path / f"run{hash_seed}" / "readout.safetensors"
        run_cli("train", "--training-data-dir", str(examples), "--model", "smollm2", "--target-layers", "3,9",
                "--batch-size", "8", "--pooling", "mean", "--output", str(output), "--no-progress",
                hash_seed=hash_seed, threads=threads)
        outputs.append(output)
    first, second = outputs
    assert first.read_bytes() == second.read_bytes()
    assert first.with_suffix(".json").read_bytes() == second.with_suffix(".json").read_bytes()
    manifest = json.loads(first.with_suffix(".json").read_text())
    assert manifest["concepts"] == ["calm", "warmth"] and manifest["layers"] == [3, 9]
