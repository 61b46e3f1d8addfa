"""``amygdala bench train --random-model NAME``: the train stage at a real model's shape (random weights), on
any device.

The issue's setup: a Qwen3 of the named shape built directly on ``--device`` in ``--dtype``
(``amygdala.bench.random_models``), 496 unique synthetic texts (about 53.7k tokens, 108 per text), 12 concepts,
the default target layers (25, 36, 46, 57 for 64 layers). For each batching (``--batch-sizes`` texts per batch,
then each ``--batch-tokens`` budget), alternated and best of ``--repeats``:

- ``bare_s``: the truncated forward alone over the same length-sorted batches (pre-tokenized, stopped after the
  deepest target layer, nothing pooled or summed);
- ``train_s``: ``amygdala.training.stage.train`` with the default options (mean pooling, lda_diagonal) and that
  batching: tokenizing, pooling, statistics, directions, calibration, the artifact's tensors on the CPU;
- ``train_over_bare`` (goal <= 1.05), tokens/s of both, and model FLOP utilisation (MFU: model FLOPs of the
  real tokens / seconds / the peak), goal >= 0.55 for the bare forward.

The peak is ``--peak-tflops`` or, when not given, a dense matmul measured in the same dtype on the same device.

Also, once: ``pool_only_s`` (``iter_pooled`` alone at the first batching, no statistics: what the statistics,
directions and calibration add on top is ``train_s - pool_only_s``), and ``auto_layers`` (``train`` with
``--target-layers auto:4``: every layer pooled once and scored one at a time on the device; its seconds and, on a
GPU, the peak device memory it takes beyond the model's weights).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from amygdala.bench.random_models import build_random_model, forward_flops, matmul_peak_tflops, synthetic_examples
from amygdala.bench.timing import Timing, bare_forward, log
from amygdala.extraction.examples import Example
from amygdala.forward.models import LoadedModel
from amygdala.forward.pooled import iter_pooled
from amygdala.forward.pooling import PoolingSpec
from amygdala.training.layers import AutoLayers
from amygdala.training.stage import TrainOptions, default_target_layers, train


def _synchronized(device: torch.device, action: Callable[[], object]) -> Callable[[], object]:
    """``action`` timed to its end on the device (CUDA work is asynchronous)."""
    def run() -> object:
        result = action()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return result

    return run


def _batchings(args: argparse.Namespace) -> list[dict[str, int | None]]:
    return ([{"batch_size": size, "batch_tokens": None} for size in args.batch_sizes]
            + [{"batch_size": None, "batch_tokens": tokens} for tokens in args.batch_tokens])


def _label(batching: dict[str, int | None]) -> str:
    return ",".join(f"{name}={value}" for name, value in batching.items() if value is not None)


def _measure(loaded: LoadedModel, examples: Sequence[Example], texts: Sequence[str], layers: tuple[int, ...],
             batching: dict[str, int | None], args: argparse.Namespace) -> dict[str, float]:
    device = loaded.device
    options = TrainOptions(target_layers=layers, batch_size=batching["batch_size"],
                           batch_tokens=batching["batch_tokens"])
    forward = bare_forward(loaded, texts, layers, batching["batch_size"], batching["batch_tokens"])
    bare, ours = Timing(), Timing()
    for _ in range(args.repeats):
        bare.run(_synchronized(device, forward.run))
        ours.run(_synchronized(device, lambda: train(loaded, list(examples), options)))
        log(f"{_label(batching)}: bare {bare.wall:.2f} s, train {ours.wall:.2f} s")
    return {"bare_s": round(bare.wall, 3), "train_s": round(ours.wall, 3),
            "train_over_bare": round(ours.wall / bare.wall, 3), "batches": forward.n_batches,
            "padded_tokens": forward.padded_tokens}


def _pool_only(loaded: LoadedModel, texts: Sequence[str], layers: tuple[int, ...],
               batching: dict[str, int | None]) -> float:
    """Seconds of ``iter_pooled`` alone (the forwards and the pooling; nothing summed), one run."""
    def run() -> None:
        for _ in iter_pooled(loaded, texts, layers, PoolingSpec(), batch_size=batching["batch_size"],
                                 batch_tokens=batching["batch_tokens"]):
            pass

    timing = Timing()
    timing.run(_synchronized(loaded.device, run))
    return round(timing.wall, 3)


def _auto_layers(loaded: LoadedModel, examples: Sequence[Example]) -> dict[str, object]:
    """``train`` with automatic layers: seconds, the chosen layers, and the device memory beyond the weights."""
    device = loaded.device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    start = time.perf_counter()
    artifact = train(loaded, list(examples), TrainOptions(target_layers=AutoLayers(k=4)))
    seconds = time.perf_counter() - start
    result: dict[str, object] = {"seconds": round(seconds, 2), "chosen": list(artifact.layers),
                                 "pooled_cpu_gib": round(len({e.text for e in examples}) * loaded.n_layers
                                                         * loaded.hidden_size * 4 / 2**30, 3)}
    if device.type == "cuda":
        result["peak_beyond_weights_gib"] = round((torch.cuda.max_memory_allocated(device) - before) / 2**30, 3)
        result["weights_gib"] = round(before / 2**30, 2)
    return result


def _rates(run: dict[str, float], tokens: int, flops: float, peak_tflops: float) -> dict[str, float]:
    bare, ours = run["bare_s"], run["train_s"]
    return {**run, "bare_tokens_per_s": round(tokens / bare, 1), "train_tokens_per_s": round(tokens / ours, 1),
            "bare_mfu": round(flops / bare / (peak_tflops * 1e12), 4),
            "train_mfu": round(flops / ours / (peak_tflops * 1e12), 4)}


def _environment(device: torch.device) -> dict[str, object]:
    import transformers

    info: dict[str, object] = {"torch": torch.__version__, "transformers": transformers.__version__,
                               "python": platform.python_version()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    else:
        info["cpu_threads"] = torch.get_num_threads()
    return info


def run_random_model(args: argparse.Namespace) -> dict[str, object]:
    """Build the model, measure every batching, and return the benchmark's JSON object."""
    start = time.perf_counter()
    loaded = build_random_model(args.random_model, args.device, args.dtype)
    if loaded.device.type == "cuda":
        torch.cuda.synchronize(loaded.device)
    built = time.perf_counter() - start
    config: Any = loaded.model.config
    data = synthetic_examples(args.texts, args.mean_tokens, vocab_size=int(config.vocab_size))
    layers = default_target_layers(loaded.n_layers)
    flops = forward_flops(config, data.token_counts, max(layers) + 1)
    log(f"{loaded.model_id} built on {loaded.device} in {built:.1f} s; {len(data.texts)} texts, {data.tokens} "
        f"tokens, layers {list(layers)}, {flops / 1e12:.1f} TFLOP per pass")
    peak = args.peak_tflops or matmul_peak_tflops(str(loaded.device), args.dtype)
    log(f"peak {peak:.1f} TFLOP/s ({'given' if args.peak_tflops else 'measured matmul'})")
    warm = TrainOptions(target_layers=layers, batch_size=8)
    train(loaded, list(data.examples[:80]), warm)  # kernels, allocator and solver handles warm before timing
    runs = {}
    for batching in _batchings(args):
        run = _measure(loaded, data.examples, data.texts, layers, batching, args)
        runs[_label(batching)] = _rates(run, data.tokens, flops, peak)
        # A JSON line per batching as it completes: a run cut short by a time limit still reports these.
        print(json.dumps({"partial": _label(batching), **runs[_label(batching)]}), flush=True)
    first = _batchings(args)[0]
    pool_only = _pool_only(loaded, data.texts, layers, first)
    log(f"{_label(first)}: iter_pooled alone {pool_only:.2f} s")
    auto = _auto_layers(loaded, data.examples) if args.auto_layers else None
    log(f"auto layers: {auto}")
    worst_ratio = max(run["train_over_bare"] for run in runs.values())
    least_mfu = min(run["bare_mfu"] for run in runs.values())
    return {"model": loaded.model_id, "device": str(loaded.device), "dtype": args.dtype,
            "train_over_bare_max": worst_ratio, "bare_mfu_min": least_mfu,
            "goals_met": {"train_over_bare<=1.05": worst_ratio <= 1.05, "bare_mfu>=0.55": least_mfu >= 0.55},
            "runs": runs, "pool_only_s": {_label(first): pool_only}, "auto_layers": auto,
            "details": {"unique_texts": len(data.texts), "tokens": data.tokens, "layers": list(layers),
                        "n_layers": loaded.n_layers, "hidden_size": loaded.hidden_size,
                        "forward_tflop": round(flops / 1e12, 2), "peak_tflops": float(f"{peak:.4g}"),
                        "peak_source": "given" if args.peak_tflops else "measured bf16 matmul"
                        if args.dtype == "bfloat16" else f"measured {args.dtype} matmul",
                        "build_s": round(built, 2), "repeats": args.repeats, **_environment(loaded.device)}}
