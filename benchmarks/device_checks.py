"""Correctness on an accelerator, in under a minute: what the CPU test suite cannot show. Run by gpu_session.sh.

With the tiny random Qwen3 of random_models.py (built once on the CPU and copied, so every device holds the
same weights) and 192 synthetic texts:

- ``identical_artifacts_<dtype>``: two ``train`` runs on the device write byte-identical readout files;
- ``min_cosine_vs_cpu_<dtype>``: the least cosine, over concepts and layers, between the device's vectors and
  the CPU's float32 ones (float32 on the device should give about 1 - 1e-9; bfloat16 less);
- ``max_calibration_rel_diff_float32``: the largest relative difference of the calibration means/stds, device vs
  CPU, both float32 forwards;
- ``seconds``: for the whole check.

The last line on stdout is one JSON object; ``ok`` is true when the byte-identity holds for every dtype and
float32 agrees with the CPU to a cosine of at least 0.99999.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from amygdala.artifact import ReadoutArtifact, save_artifact  # noqa: E402
from amygdala.models import LoadedModel  # noqa: E402
from amygdala.training import TrainOptions, train  # noqa: E402
from random_models import build_random_model, synthetic_examples  # noqa: E402


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


def _calibration_diff(a: ReadoutArtifact, b: ReadoutArtifact) -> float:
    worst = 0.0
    for table_a, table_b in ((a.calibration.mean, b.calibration.mean), (a.calibration.std, b.calibration.std)):
        for layer in a.layers:
            scale = table_b[layer].abs().max().item() or 1.0
            worst = max(worst, (table_a[layer] - table_b[layer]).abs().max().item() / scale)
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    cpu = build_random_model("tiny", "cpu", "float32")
    data = synthetic_examples(192, 60.0, vocab_size=int(cpu.model.config.vocab_size))
    options = TrainOptions(batch_size=16)
    reference = train(cpu, list(data.examples), options)
    result: dict[str, object] = {"device": args.device}
    for dtype in ("float32", "bfloat16"):
        loaded = _on(cpu, args.device, dtype)
        first, second = (train(loaded, list(data.examples), options) for _ in range(2))
        result[f"identical_artifacts_{dtype}"] = _artifact_bytes(first) == _artifact_bytes(second)
        result[f"min_cosine_vs_cpu_{dtype}"] = round(_min_cosine(first, reference), 9)
        if dtype == "float32":
            result["max_calibration_rel_diff_float32"] = _calibration_diff(first, reference)
    result["ok"] = bool(result["identical_artifacts_float32"] and result["identical_artifacts_bfloat16"]
                        and result["min_cosine_vs_cpu_float32"] >= 0.99999)
    result["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
