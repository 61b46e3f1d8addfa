"""Per-token decode latency of `amygdala serve` with readout on vs off: the same server, prompt and greedy tokens.

The model is served in-process on a free loopback port with an artifact (``--vectors``, or ``--concepts`` random
unit vectors at the training default layers: 171 concepts = the bundled emotions table). Each round streams
``--tokens`` tokens twice, readout on then off (order alternating between rounds), over real HTTP/SSE. Decode
latency per token = the mean gap between consecutive chunks of one request (the first chunk, which carries the
prefill, is left out); each mode's figure is the median over rounds (``_min``: the fastest round, the figure least
disturbed by other processes on a shared machine). ``readout_overhead`` = on / off - 1 (goal: at most 0.10).

``readout_cost_ms_per_token`` times, in-process and without the model, the work readout adds per token: the
projection at every hooked layer (``project_readout``), the stack, the copy to the CPU and the chunk's JSON. The
last output line is one JSON object.

    amygdala bench readout [--model default] [--quick] [-- --tokens 32 --rounds 10 --threads N]
    python benchmarks/bench_readout.py [--model default] [--tokens 32] [--rounds 10] [--threads N] [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Sequence

import torch

from amygdala.artifact import Calibration, ReadoutArtifact, load_artifact
from amygdala.forward.models import LoadedModel, load_model
from amygdala.readout.projection import project_readout, projector_for
from amygdala.serve import Engine, ServeOptions, create_app, serve_in_thread
from amygdala.serve.client import ReadoutClient
from amygdala.training.stage import default_target_layers

PROMPT = "I opened the letter slowly, and as I read the first line I felt"


def random_artifact(loaded: LoadedModel, n_concepts: int, seed: int = 0) -> ReadoutArtifact:
    """Unit random vectors at the training default layers, with a calibration so z-scores work too."""
    generator = torch.Generator().manual_seed(seed)
    layers = default_target_layers(loaded.n_layers)
    vectors = {}
    for layer in layers:
        raw = torch.randn(n_concepts, loaded.hidden_size, generator=generator)
        vectors[layer] = raw / raw.norm(dim=-1, keepdim=True)
    calibration = Calibration({layer: torch.zeros(n_concepts) for layer in layers},
                              {layer: torch.ones(n_concepts) for layer in layers})
    return ReadoutArtifact(tuple(f"concept_{i}" for i in range(n_concepts)), layers, vectors, loaded.hidden_size,
                           calibration=calibration)


def decode_ms_per_token(client: ReadoutClient, tokens: int, readout: bool) -> float:
    """Mean gap between consecutive streamed tokens of one greedy request, in ms."""
    stamps = []
    for chunk in client.stream_completion(PROMPT, max_tokens=tokens, temperature=0, readout=readout):
        stamps.append(time.perf_counter())
        assert (chunk.readout is not None) == readout, "readout flag not honoured"
    if len(stamps) < 3:
        raise RuntimeError(f"only {len(stamps)} tokens streamed (the model stopped early): use another prompt")
    return 1000 * (stamps[-1] - stamps[1]) / (len(stamps) - 2)


def readout_cost_ms(loaded: LoadedModel, artifact: ReadoutArtifact, repeats: int = 300) -> float:
    """Median time of the per-token readout work on one residual per layer, JSON chunk included, in ms."""
    projector = projector_for(artifact, loaded.device)
    residual = torch.randn(1, loaded.hidden_size, device=loaded.device)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        values = torch.stack([project_readout(residual, projector, i, zscore=False)
                              for i in range(len(artifact.layers))], dim=1)[-1].cpu()
        json.dumps({"choices": [{"index": 0, "text": " word", "token_id": 1, "readout": values.tolist()}]})
        samples.append(time.perf_counter() - start)
    return 1000 * statistics.median(samples)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="amygdala bench readout", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--vectors", default=None, help="A real readout.safetensors (default: random vectors).")
    parser.add_argument("--concepts", type=int, default=171)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice); 1 is "
                        "steadier on a machine shared with other work.")
    parser.add_argument("--quick", action="store_true", help="8 tokens, 2 rounds: a smoke run.")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, object]:
    """Serve, stream the rounds, time the readout work; the benchmark's JSON object (also printed)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    tokens, rounds = (8, 2) if args.quick else (args.tokens, args.rounds)
    loaded = load_model(args.model)
    artifact = load_artifact(args.vectors) if args.vectors else random_artifact(loaded, args.concepts)
    app = create_app(Engine(loaded, artifact), ServeOptions(max_tokens=max(tokens, 16)))
    times: dict[bool, list[float]] = {True: [], False: []}
    with serve_in_thread(app) as url, ReadoutClient(url) as client:
        decode_ms_per_token(client, 4, True)  # warm-up: first forward passes, allocator, HTTP connection
        for round_index in range(rounds):
            for readout in ((True, False) if round_index % 2 == 0 else (False, True)):
                times[readout].append(decode_ms_per_token(client, tokens, readout))
            print(f"round {round_index + 1}/{rounds}: on {times[True][-1]:.2f} ms/token, "
                  f"off {times[False][-1]:.2f} ms/token", flush=True)
    on, off = statistics.median(times[True]), statistics.median(times[False])
    on_min, off_min = min(times[True]), min(times[False])
    cost = readout_cost_ms(loaded, artifact)
    result = {"model": loaded.model_id, "concepts": len(artifact.concepts), "layers": list(artifact.layers),
              "tokens_per_request": tokens, "rounds": rounds, "decode_ms_per_token_off": round(off, 3),
              "decode_ms_per_token_on": round(on, 3), "readout_overhead": round(on / off - 1, 4),
              "decode_ms_per_token_off_min": round(off_min, 3), "decode_ms_per_token_on_min": round(on_min, 3),
              "readout_overhead_min": round(on_min / off_min - 1, 4), "readout_cost_ms_per_token": round(cost, 4),
              "readout_cost_share": round(cost / off_min, 4),
              "torch_threads": torch.get_num_threads(), "machine": platform.machine(), "device": str(loaded.device)}
    print(json.dumps(result), flush=True)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
