"""Correctness on an accelerator, in about a minute: what the CPU test suite cannot show. Run by gpu_session.sh.

With the tiny random Qwen3 of amygdala.bench.random_models (built once on the CPU and copied, so every device holds the same
weights) and synthetic texts:

- ``stats_max_rel_diff``: fp64 statistics accumulated on the device (side stream, overlapping the producer)
  against the same sums on the CPU, from the same pooled batches: the largest relative difference;
- ``identical_artifacts_<dtype>``: two ``train`` runs on the device give byte-identical readout files;
- ``min_cosine_vs_cpu_<dtype>``: the least cosine, over concepts and layers, between the device's vectors and
  the CPU's float32 ones (float32 on the device: about 1 - 1e-9; bfloat16 less);
- ``cli``: the real commands on the device's defaults (``--device`` left out: cuda, bf16, a token budget):
  ``train`` twice (byte-identical), ``eval`` reusing train's activation cache, ``readout``; each exit code and
  the device its output names.

The last line on stdout is one JSON object; ``ok`` is true when every check holds. Exit code 0 when ok.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from amygdala.artifact import ReadoutArtifact, save_artifact
from amygdala.bench.random_models import SyntheticSet, build_random_model, synthetic_examples
from amygdala.forward.models import LoadedModel
from amygdala.training.stage import TrainOptions, train
from amygdala.training.statistics import StatsAccumulator

REPO = Path(__file__).resolve().parents[1]


def _on(cpu_model: LoadedModel, device: str, dtype: str) -> LoadedModel:
    model = copy.deepcopy(cpu_model.model).to(device=device, dtype=getattr(torch, dtype))
    model.model.rotary_emb.to(torch.float32)  # its inv_freq stays float32, as from_pretrained leaves it
    return dataclasses.replace(cpu_model, model=model, dtype=dtype)


def _artifact_bytes(artifact: ReadoutArtifact) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        vectors = Path(folder) / "readout.safetensors"
        manifest = save_artifact(artifact, vectors)
        return vectors.read_bytes() + manifest.read_bytes()


def _min_cosine(a: ReadoutArtifact, b: ReadoutArtifact) -> float:
    return min(torch.nn.functional.cosine_similarity(a.vectors[layer].double(), b.vectors[layer].double(),
                                                     dim=1).min().item() for layer in a.layers)


def stats_difference(device: str, batches: int = 40, hidden: int = 512) -> float:
    """Largest relative difference of every fp64 sum, device (side stream) vs CPU, over the same batches."""
    generator = torch.Generator().manual_seed(0)
    sums = {name: StatsAccumulator(["a", "b", "c"], [0, 1], hidden, name) for name in ("cpu", device)}
    for _ in range(batches):
        pooled = torch.randn(16, 2, hidden, generator=generator) * 10.0 ** torch.randint(-2, 3, (1, 1, hidden))
        positive = torch.rand(16, 3, generator=generator) > 0.7
        on_device = pooled.to(device) * 1.0  # produced on the device's main stream, as a forward would
        sums[device].add(on_device, positive, ~positive)
        sums["cpu"].add(pooled, positive, ~positive)
    frozen = {name: accumulator.freeze() for name, accumulator in sums.items()}
    worst = 0.0
    for field in ("positive_sum", "negative_sum", "total_sum", "second_moment"):
        cpu, other = getattr(frozen["cpu"], field), getattr(frozen[device], field).cpu()
        worst = max(worst, ((other - cpu).abs().max() / cpu.abs().max()).item())
    return worst


def library_checks(cpu: LoadedModel, data: SyntheticSet, device: str) -> dict[str, object]:
    options = TrainOptions(batch_size=16)
    reference = train(cpu, list(data.examples), options)
    result: dict[str, object] = {"stats_max_rel_diff": stats_difference(device)}
    for dtype in ("float32", "bfloat16"):
        loaded = _on(cpu, device, dtype)
        first, second = (train(loaded, list(data.examples), options) for _ in range(2))
        result[f"identical_artifacts_{dtype}"] = _artifact_bytes(first) == _artifact_bytes(second)
        result[f"min_cosine_vs_cpu_{dtype}"] = round(_min_cosine(first, reference), 9)
    return result


def _write_examples(data: SyntheticSet, folder: Path) -> None:
    """The synthetic examples as ``<emotion>.jsonl`` files, every fifth text held out."""
    folder.mkdir(parents=True)
    rows: dict[str, list[str]] = {}
    for example in data.examples:
        held = int(example.key.removeprefix("t")) % 5 == 0
        rows.setdefault(example.emotion, []).append(dataclasses.replace(
            example, split="heldout" if held else "train").to_json())
    for emotion, lines in rows.items():
        (folder / f"{emotion}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _amygdala(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run([sys.executable, "-m", "amygdala.cli", *args], capture_output=True, text=True,
                          timeout=120, env=env)


def cli_checks(cpu: LoadedModel, data: SyntheticSet, root: Path) -> dict[str, object]:
    """train (twice), eval and readout through the real CLI with the device defaults."""
    model_dir, examples = root / "model", root / "examples"
    cpu.model.save_pretrained(model_dir)
    cpu.tokenizer.save_pretrained(model_dir)
    _write_examples(data, examples)
    train_args = ["train", "--model", str(model_dir), "--training-data-dir", str(examples), "--no-progress"]
    first = _amygdala(*train_args, "--output", str(root / "a" / "readout.safetensors"))
    again = _amygdala(*train_args, "--output", str(root / "b" / "readout.safetensors"),
                      "--cache-dir", str(root / "cache"))
    runs = {"train": first, "train_cached": again}
    if importlib.util.find_spec("matplotlib") is not None:  # the report's charts need it
        runs["eval"] = _amygdala("eval", "--vectors", str(root / "b" / "readout.safetensors"), "--model",
                                 str(model_dir), "--training-data-dir", str(examples), "--report-dir",
                                 str(root / "report"), "--cache-dir", str(root / "cache"), "--no-progress")
    (root / "texts.txt").write_text("w5 w6 w7 w8\nw9 w10 w11\n", encoding="utf-8")
    runs["readout"] = _amygdala("readout", "--vectors", str(root / "a" / "readout.safetensors"), "--model",
                                str(model_dir), "--input", str(root / "texts.txt"), "--output",
                                str(root / "readouts.jsonl"), "--no-progress")
    same = all((root / d / "readout.safetensors").exists() for d in "ab") and all(
        (root / "a" / name).read_bytes() == (root / "b" / name).read_bytes()
        for name in ("readout.safetensors", "readout.json"))
    eval_out = runs["eval"].stdout if "eval" in runs else "skipped: no matplotlib here"
    return {"exit_codes": {name: run.returncode for name, run in runs.items()}, "identical_artifacts": same,
            "train_says": next((line for line in first.stdout.splitlines() if line.startswith("trained")), ""),
            "eval_says": next((line for line in eval_out.splitlines() if "pooled on" in line or "skipped" in line), ""),
            "errors": {name: run.stderr[-600:] for name, run in runs.items() if run.returncode != 0}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    cpu = build_random_model("tiny", "cpu", "float32")
    data = synthetic_examples(96, 60.0, vocab_size=int(cpu.model.config.vocab_size))
    result: dict[str, object] = {"device": args.device, **library_checks(cpu, data, args.device)}
    with tempfile.TemporaryDirectory() as folder:
        cli = cli_checks(cpu, data, Path(folder))
    result["cli"] = cli
    result["ok"] = bool(result["identical_artifacts_float32"] and result["identical_artifacts_bfloat16"]
                        and result["min_cosine_vs_cpu_float32"] >= 0.99999 and result["stats_max_rel_diff"] < 1e-12
                        and not any(cli["exit_codes"].values()) and cli["identical_artifacts"])
    result["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
