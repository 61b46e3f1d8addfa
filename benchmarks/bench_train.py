"""Train-stage benchmark on the embedded Gemma 3 270M, on CPU. Never run in CI; see benchmarks/README.md.

Progress goes to stderr; the last line on stdout is one JSON object:

- ``overhead_vs_forward``: ``amygdala.training.stage.train`` time / a bare truncated forward (the same unique texts,
  pre-tokenized, the same length-sorted batches, stopped after the same deepest layer, no pooling or sums).
- ``speedup_vs_steering_vectors``: ``steering_vectors.train_steering_vector`` (0.12.2, mean aggregator,
  ``read_token_index=-1``: the last non-pad token, as our ``last`` pooling) time over all concepts / our time.
- ``min_cosine_vs_steering_vectors``: the least cosine between its vectors and ours, over concepts and layers.
- ``rss_ratio_10x``: peak RSS while training on 10x more (distinct) texts / on 1x, each in a fresh subprocess.
- ``time_ratio_layer4_vs_layer17``: train time with target layer 4 / with target layer 17 (ideal about 5/18).

Usage: ``python benchmarks/bench_train.py [--quick]`` or ``amygdala bench train``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import re
import resource
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from amygdala.artifact import ReadoutArtifact
from amygdala.extraction.examples import Example
from amygdala.forward.capture import encode_texts
from amygdala.forward.models import LoadedModel, canonical_dtype, load_model
from amygdala.training.stage import CAA_RECIPE, TrainOptions, train, training_texts

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "amygdala" / "data" / "sample_graph.jsonl"
TAG_LINE = re.compile(r"^\s*([A-Za-z][\w-]*:\d+(\.\d+)?\s*)+$")
LAYERS = (7, 10, 12, 15)

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling modules, also when run through runpy
from forward_timing import Timing, bare_forward, log  # noqa: E402


def _stable_rank(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()


def load_nodes(max_chars: int) -> list[tuple[str, str, dict[str, float]]]:
    """(key, text, tags) per node of the bundled sample (plain JSON; trailing tag lines removed), texts cut at a
    word boundary to ``max_chars``; synthetic sentences when the sample is absent."""
    if not SAMPLE.exists():
        return _synthetic_nodes()
    nodes = []
    for raw in SAMPLE.read_text(encoding="utf-8").splitlines():
        row = json.loads(raw)
        lines, tags = row["content"].split("\n"), {}
        while lines and TAG_LINE.match(lines[-1]):
            for token in lines.pop().split():
                name, score = token.split(":")
                tags[name.lower()] = float(score)
        text = " ".join("\n".join(lines).split())
        if len(text) > max_chars:
            text = text[:max_chars].rsplit(" ", 1)[0]
        nodes.append((row["key"], text, tags))
    return nodes


def _synthetic_nodes() -> list[tuple[str, str, dict[str, float]]]:
    moods = ["calm", "warmth", "tired", "amused", "hopeful", "curiosity", "sad", "anxious", "proud",
             "frustrated", "relieved", "guilty", "grateful"]
    subjects = ["the release", "my sister", "the compiler", "a long walk", "the garden", "the meeting", "rain"]
    nodes = []
    for index in range(270):
        mood, other = moods[index % 13], moods[(index * 7 + 3) % 13]
        text = (f"Entry {index}: thinking about {subjects[index % 7]} left me {mood}, "
                f"and a little {other} as the day went on{'.!?'[index % 3]}")
        nodes.append((f"node-{index}", text, {mood: 8.0, other: 4.0}))
    return nodes


def build_examples(nodes: list[tuple[str, str, dict[str, float]]], n_concepts: int, pairs: int,
                   min_score: float = 7.0) -> list[Example]:
    """For the ``n_concepts`` most tagged emotions: ``pairs`` positives (score >= min_score) and as many
    negatives (tag absent), both picked by one seeded hash ranking of node keys, as a capped extract would."""
    unique = {text: (key, tags) for key, text, tags in nodes}
    ranked = sorted(unique.items(), key=lambda item: _stable_rank("bench", item[1][0]))
    counts: dict[str, int] = {}
    for _, (_, tags) in ranked:
        for name, score in tags.items():
            counts[name] = counts.get(name, 0) + (score >= min_score)
    concepts = sorted(counts, key=lambda name: (-counts[name], name))[:n_concepts]
    examples = []
    for concept in concepts:
        positive = [(t, k) for t, (k, tags) in ranked if tags.get(concept, 0) >= min_score][:pairs]
        negative = [(t, k) for t, (k, tags) in ranked if concept not in tags][:len(positive)]
        examples += [Example(concept, "positive", t, k, 9.0, "train") for t, k in positive]
        examples += [Example(concept, "negative", t, k, 0.0, "train") for t, k in negative]
    return examples


def scaled_examples(examples: list[Example], factor: int) -> list[Example]:
    """``factor`` distinct copies of every text (a copy number in front), labels kept: ``factor`` x the work."""
    return [Example(e.emotion, e.polarity, f"({copy}) {e.text}" if copy else e.text, f"{e.key}#{copy}", e.score,
                    e.split) for copy in range(factor) for e in examples]


def train_run(loaded: LoadedModel, examples: list[Example], layers: Sequence[int],
              batch_size: int) -> Callable[[], ReadoutArtifact]:
    return lambda: train(loaded, examples, TrainOptions(**CAA_RECIPE, target_layers=tuple(layers), batch_size=batch_size))


def run_steering_vectors(loaded: LoadedModel, examples: list[Example], layers: Sequence[int],
                         batch_size: int) -> dict[str, dict[int, torch.Tensor]]:
    """The peer: one ``train_steering_vector`` per concept over its (positive, negative) pairs."""
    from steering_vectors import train_steering_vector
    from steering_vectors.aggregators import mean_aggregator

    vectors = {}
    for concept in sorted({e.emotion for e in examples}):
        positive = [e.text for e in examples if e.emotion == concept and e.polarity == "positive"]
        negative = [e.text for e in examples if e.emotion == concept and e.polarity == "negative"]
        steering = train_steering_vector(loaded.model, loaded.tokenizer, list(zip(positive, negative)),
                                         layers=list(layers), read_token_index=-1, aggregator=mean_aggregator(),
                                         batch_size=batch_size)
        vectors[concept] = steering.layer_activations
    return vectors


def min_cosine(artifact: ReadoutArtifact, peer: dict[str, dict[int, torch.Tensor]]) -> float:
    cosines = [torch.nn.functional.cosine_similarity(artifact.vectors[layer][index].double(),
                                                     peer[concept][layer].double().flatten(), dim=0).item()
               for index, concept in enumerate(artifact.concepts) for layer in artifact.layers]
    return min(cosines)


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
    loaded = load_model("default")
    examples = scaled_examples(build_examples(load_nodes(args.rss_chars), args.concepts, args.rss_pairs), factor)
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux)
    train(loaded, examples, TrainOptions(**CAA_RECIPE, target_layers=LAYERS, batch_size=args.batch_size))
    print(json.dumps({"peak_rss_mb": peak_rss_mb(), "n_unique_texts": len(training_texts(examples).texts)}))


def measure_rss(factor: int, args: argparse.Namespace) -> dict[str, float]:
    command = [sys.executable, __file__, "--rss-child", str(factor), "--concepts", str(args.concepts),
               "--rss-pairs", str(args.rss_pairs), "--rss-chars", str(args.rss_chars),
               "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _int_list(value: str) -> list[int]:
    return [int(part) for part in value.split(",") if part.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=Path(__file__).name, description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run with a few examples")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1... (default: cuda if available, else cpu)")
    parser.add_argument("--dtype", default=None, help="forward dtype (default: bfloat16 on a GPU, float32 on a CPU)")
    parser.add_argument("--random-model", default=None, help="random weights at a real shape: "
                        "qwen3-32b, qwen3-8b or tiny (bench_scale.py); default: the embedded Gemma on its sample")
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


def measure_speed(loaded: LoadedModel, examples: list[Example], args: argparse.Namespace) -> dict[str, object]:
    """Bare forward vs train (alternated), the peer once, then deepest layer 4 vs 17 (alternated)."""
    texts, bs = training_texts(examples).texts, args.batch_size
    bare, ours, shallow, deep, peer = Timing(), Timing(), Timing(), Timing(), Timing()
    forward = bare_forward(loaded, texts, LAYERS, bs).run
    bare_forward(loaded, texts[:bs], LAYERS, bs).run()  # warm-up
    for _ in range(args.repeats):
        bare.run(forward)
        artifact = ours.run(train_run(loaded, examples, LAYERS, bs))
        log(f"best so far: bare forward {bare.wall:.1f} s (cpu {bare.cpu:.1f}), train {ours.wall:.1f} s (cpu {ours.cpu:.1f})")
    vectors = peer.run(lambda: run_steering_vectors(loaded, examples, LAYERS, bs))
    log(f"steering-vectors {peer.wall:.1f} s (cpu {peer.cpu:.1f})")
    for _ in range(args.repeats):
        shallow.run(train_run(loaded, examples, (4,), bs))
        deep.run(train_run(loaded, examples, (17,), bs))
    log(f"deepest layer 4: {shallow.wall:.1f} s, 17: {deep.wall:.1f} s")
    seconds = {"train": ours, "bare_forward": bare, "steering_vectors": peer, "layer4": shallow, "layer17": deep}
    return {"overhead_vs_forward": round(ours.wall / bare.wall, 3),
            "speedup_vs_steering_vectors": round(peer.wall / ours.wall, 2),
            "min_cosine_vs_steering_vectors": round(min_cosine(artifact, vectors), 9),
            "time_ratio_layer4_vs_layer17": round(shallow.wall / deep.wall, 3),
            "cpu_ratios": {"overhead_vs_forward": round(ours.cpu / bare.cpu, 3),
                           "speedup_vs_steering_vectors": round(peer.cpu / ours.cpu, 2),
                           "time_ratio_layer4_vs_layer17": round(shallow.cpu / deep.cpu, 3)},
            "seconds": {name: {"wall": round(t.wall, 2), "cpu": round(t.cpu, 2)} for name, t in seconds.items()}}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rss_child:
        rss_child(args.rss_child, args)
        return 0
    if args.random_model:
        from bench_scale import run_random_model

        print(json.dumps(run_random_model(args)))
        return 0
    loaded = load_model("default", dtype=args.dtype, device=args.device)
    examples = build_examples(load_nodes(args.max_chars), args.concepts, args.pairs)
    texts = training_texts(examples).texts
    tokens = sum(len(ids) for ids in encode_texts(loaded.tokenizer, texts))
    log(f"{len(examples)} examples, {len(texts)} unique texts ({tokens} tokens), threads {torch.get_num_threads()}")
    speed = measure_speed(loaded, examples, args)
    rss = {factor: measure_rss(factor, args) for factor in (1, 10)}
    log(f"peak RSS 1x {rss[1]} / 10x {rss[10]}")
    details = {"concepts": args.concepts, "examples": len(examples), "unique_texts": len(texts), "tokens": tokens,
               "layers": list(LAYERS), "batch_size": args.batch_size, "threads": torch.get_num_threads(),
               "ideal_layer_ratio": round(5 / 18, 3), "peak_rss_mb": {f"{k}x": round(v["peak_rss_mb"], 1) for k, v in rss.items()},
               "rss_unique_texts": {f"{k}x": v["n_unique_texts"] for k, v in rss.items()},
               "cpu_ratios": speed.pop("cpu_ratios"), "seconds": speed.pop("seconds")}
    print(json.dumps({**speed, "rss_ratio_10x": round(rss[10]["peak_rss_mb"] / rss[1]["peak_rss_mb"], 3),
                      "details": details}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
