"""Train-stage benchmark on the embedded Gemma 3 270M (or ``--model``), on CPU by default. Never run in CI; see
benchmarks/README.md.

Progress goes to stderr; the last line on stdout is one JSON object:

- ``overhead_vs_forward``: ``amygdala.training.stage.train`` time / a bare truncated forward (the same unique texts,
  pre-tokenized, the same length-sorted batches, stopped after the same deepest layer, no pooling or sums).
- ``speedup_vs_steering_vectors``: ``steering_vectors.train_steering_vector`` (0.12.2, mean aggregator,
  ``read_token_index=-1``: the last non-pad token, as our ``last`` pooling) time over all concepts / our time.
- ``min_cosine_vs_steering_vectors``: the least cosine between its vectors and ours, over concepts and layers.
  Both peer columns are left out, with one line on stderr naming the pip command, when the optional peer is not
  installed (``amygdala.bench.peer``).
- ``rss_ratio_10x``: peak RSS while training on 10x more (distinct) texts / on 1x, each in a fresh subprocess.
- ``time_ratio_layer4_vs_layer17``: train time with target layer 4 / with target layer 17 (ideal about 5/18); on a
  ``--model`` of another depth, the layers at the same depth fractions (``details.ratio_layers``).

Usage: ``amygdala bench train [--quick]`` or ``python benchmarks/bench_train.py [--quick]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from amygdala.artifact import ReadoutArtifact
from amygdala.bench.peer import PEER, min_cosine, missing_peer_line, peer_run
from amygdala.bench.sample import build_examples, load_nodes, scaled_examples
from amygdala.bench.timing import Timing, bare_forward, log
from amygdala.extraction.examples import Example
from amygdala.forward.capture import encode_texts
from amygdala.forward.models import LoadedModel, canonical_dtype, load_model
from amygdala.training.stage import CAA_RECIPE, TrainOptions, default_target_layers, train, training_texts


def ratio_layers(n_layers: int) -> tuple[int, int]:
    """The shallow and deep target layers the layer ratio compares: 4 and 17 of Gemma's 18, the same depth
    fractions elsewhere."""
    return round(4 * (n_layers - 1) / 17), n_layers - 1


def train_run(loaded: LoadedModel, examples: list[Example], layers: Sequence[int],
              batch_size: int) -> Callable[[], ReadoutArtifact]:
    options = TrainOptions(**CAA_RECIPE, target_layers=tuple(layers), batch_size=batch_size)
    return lambda: train(loaded, examples, options)


def peak_rss_mb() -> float:
    """Peak resident memory since the last reset (VmHWM), else since the process started."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_child(factor: int, args: argparse.Namespace) -> None:
    """In a fresh process: load, reset the peak-RSS mark, train on ``factor`` x the examples, print the peak."""
    loaded = load_model(args.model)
    examples = scaled_examples(build_examples(load_nodes(args.rss_chars), args.concepts, args.rss_pairs), factor)
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux)
    layers = default_target_layers(loaded.n_layers)
    train(loaded, examples, TrainOptions(**CAA_RECIPE, target_layers=layers, batch_size=args.batch_size))
    print(json.dumps({"peak_rss_mb": peak_rss_mb(), "n_unique_texts": len(training_texts(examples).texts)}))


def measure_rss(factor: int, args: argparse.Namespace) -> dict[str, float]:
    command = [sys.executable, "-m", "amygdala.bench.train", "--rss-child", str(factor), "--model", args.model,
               "--concepts", str(args.concepts),
               "--rss-pairs", str(args.rss_pairs), "--rss-chars", str(args.rss_chars),
               "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _int_list(value: str) -> list[int]:
    return [int(part) for part in value.split(",") if part.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="amygdala bench train", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run with a few examples")
    parser.add_argument("--model", default="default", help="the model trained on the sample (default: the embedded "
                        "Gemma 3 270M; an HF folder, smollm2 or a .gguf as for `amygdala train`)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1... (default: cuda if available, else cpu)")
    parser.add_argument("--dtype", default=None, help="forward dtype (default: bfloat16 on a GPU, float32 on a CPU)")
    parser.add_argument("--random-model", default=None, help="random weights at a real shape: "
                        "qwen3-32b, qwen3-8b or tiny (amygdala.bench.scale); default: the embedded Gemma on its sample")
    parser.add_argument("--batch-sizes", type=_int_list, default=[8, 32], help="with --random-model: texts per batch")
    parser.add_argument("--batch-tokens", type=_int_list, default=[8192],
                        help="with --random-model: padded-token budgets per batch, measured after --batch-sizes")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="with --random-model: the peak for MFU (default: a dense matmul measured here)")
    parser.add_argument("--texts", type=int, default=496, help="with --random-model: unique synthetic texts")
    parser.add_argument("--no-auto-layers", dest="auto_layers", action="store_false",
                        help="with --random-model: skip the --target-layers auto run (time, device memory)")
    parser.add_argument("--mean-tokens", type=float, default=107.4, help="with --random-model: mean tokens per text")
    parser.add_argument("--concepts", type=int, default=12)
    parser.add_argument("--pairs", type=int, default=16, help="positive/negative pairs per concept")
    parser.add_argument("--max-chars", type=int, default=160, help="cut sample texts at a word boundary")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=None, help="timed runs of ours, the best counts "
                        "(default: 3; 2 with --random-model)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--rss-pairs", type=int, default=4)
    parser.add_argument("--rss-chars", type=int, default=80)
    parser.add_argument("--rss-child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    args.dtype = canonical_dtype(args.dtype or ("float32" if torch.device(args.device).type == "cpu" else "bfloat16"))
    args.repeats = args.repeats or (2 if args.random_model else 3)
    if args.quick:
        args.pairs, args.max_chars, args.rss_pairs, args.repeats = 3, 60, 1, 1
    return args


def _ratios(ours: Timing, bare: Timing, shallow: Timing, deep: Timing, peer: Timing | None, clock: str,
            cosine: float | None = None) -> dict[str, float]:
    """The benchmark's ratios on one clock (``wall`` or ``cpu``), in the README's order; the peer's only when it
    ran, and its cosine when given."""
    def t(timing: Timing) -> float:
        return float(getattr(timing, clock))

    ratios = {"overhead_vs_forward": round(t(ours) / t(bare), 3)}
    if peer is not None:
        ratios["speedup_vs_steering_vectors"] = round(t(peer) / t(ours), 2)
    if cosine is not None:
        ratios["min_cosine_vs_steering_vectors"] = cosine
    ratios["time_ratio_layer4_vs_layer17"] = round(t(shallow) / t(deep), 3)
    return ratios


def measure_speed(loaded: LoadedModel, examples: list[Example], args: argparse.Namespace) -> dict[str, object]:
    """Bare forward vs train (alternated), the peer once (when installed), then the shallow vs the deep layer
    (alternated)."""
    texts, bs, layers = training_texts(examples).texts, args.batch_size, default_target_layers(loaded.n_layers)
    bare, ours, shallow, deep = Timing(), Timing(), Timing(), Timing()
    forward = bare_forward(loaded, texts, layers, bs).run
    bare_forward(loaded, texts[:bs], layers, bs).run()  # warm-up
    for _ in range(args.repeats):
        bare.run(forward)
        artifact = ours.run(train_run(loaded, examples, layers, bs))
        log(f"best so far: bare forward {bare.wall:.1f} s (cpu {bare.cpu:.1f}), "
            f"train {ours.wall:.1f} s (cpu {ours.cpu:.1f})")
    peer, cosine = None, None
    if (peer_train := peer_run()) is not None:
        peer = Timing()
        vectors = peer.run(lambda: peer_train(loaded, examples, layers, bs))
        cosine = round(min_cosine(artifact, vectors), 9)
        log(f"{PEER} {peer.wall:.1f} s (cpu {peer.cpu:.1f})")
    low, high = ratio_layers(loaded.n_layers)
    for _ in range(args.repeats):
        shallow.run(train_run(loaded, examples, (low,), bs))
        deep.run(train_run(loaded, examples, (high,), bs))
    log(f"deepest layer {low}: {shallow.wall:.1f} s, {high}: {deep.wall:.1f} s")
    timings = {"train": ours, "bare_forward": bare, "steering_vectors": peer, "layer4": shallow, "layer17": deep}
    return {**_ratios(ours, bare, shallow, deep, peer, "wall", cosine),
            "cpu_ratios": _ratios(ours, bare, shallow, deep, peer, "cpu"),
            "seconds": {name: {"wall": round(t.wall, 2), "cpu": round(t.cpu, 2)}
                        for name, t in timings.items() if t is not None}}


def run_sample(args: argparse.Namespace) -> dict[str, object]:
    """The model on the bundled sample: speed (in this process) and peak RSS (in fresh ones); the JSON object."""
    if peer_run() is None:
        log(missing_peer_line())
    loaded = load_model(args.model, dtype=args.dtype, device=args.device)
    examples = build_examples(load_nodes(args.max_chars), args.concepts, args.pairs)
    texts = training_texts(examples).texts
    tokens = sum(len(ids) for ids in encode_texts(loaded.tokenizer, texts))
    log(f"{len(examples)} examples, {len(texts)} unique texts ({tokens} tokens), threads {torch.get_num_threads()}")
    speed = measure_speed(loaded, examples, args)
    rss = {factor: measure_rss(factor, args) for factor in (1, 10)}
    log(f"peak RSS 1x {rss[1]} / 10x {rss[10]}")
    low, high = ratio_layers(loaded.n_layers)
    details = {"model": loaded.model_id, "concepts": args.concepts, "examples": len(examples),
               "unique_texts": len(texts), "tokens": tokens, "layers": list(default_target_layers(loaded.n_layers)),
               "batch_size": args.batch_size, "threads": torch.get_num_threads(), "ratio_layers": [low, high],
               "ideal_layer_ratio": round((low + 1) / (high + 1), 3),
               "peak_rss_mb": {f"{k}x": round(v["peak_rss_mb"], 1) for k, v in rss.items()},
               "rss_unique_texts": {f"{k}x": v["n_unique_texts"] for k, v in rss.items()},
               "cpu_ratios": speed.pop("cpu_ratios"), "seconds": speed.pop("seconds")}
    return {**speed, "rss_ratio_10x": round(rss[10]["peak_rss_mb"] / rss[1]["peak_rss_mb"], 3), "details": details}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rss_child:
        rss_child(args.rss_child, args)
    elif args.random_model:
        from amygdala.bench.scale import run_random_model

        print(json.dumps(run_random_model(args)))
    else:
        print(json.dumps(run_sample(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
