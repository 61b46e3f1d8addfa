"""Decode cost of the amygdala-vllm readout: ms per decode step and tokens/s, plugin off vs on, in vLLM's default
(compiled) mode, at batch 1 and 16. The artifact has 171 random unit concepts at 4 layers.

Each mode runs in its own process (vLLM reads plugin settings once per process), both with
``VLLM_PLUGINS=amygdala_readout``: "off" has no ``VLLM_READOUT_VECTORS`` (plugin installed, inactive), "on" reads out
every generated token (and the run checks it got one readout per token); it also times one empty
``collective_rpc`` take, the transport's fixed cost per engine step (offline) or event-loop tick (server). Decode time = time of ``generate`` with
``--tokens`` new tokens minus the time with 1 (the prefill), so the step time excludes prefill; the median over
``--reps`` repetitions is reported. Run it in the plugin's venv; the last line is one JSON object:

    VENV/bin/python plugins/vllm/benchmarks/bench_decode.py --model HF_MODEL_DIR [--tokens 64] [--reps 5]

(``HF_MODEL_DIR``: e.g. SmolLM2-135M converted by amygdala: ``python3 -c "from amygdala.forward.models import convert_gguf,
smollm2_gguf_path; print(convert_gguf(smollm2_gguf_path()))"`` in amygdala's own environment.)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_CONCEPTS = 171
BATCHES = (1, 16)
GOAL_PCT = 3.0
PROMPTS = ["The weather today is", "Once upon a time", "My favourite food is", "I feel so", "Dogs are",
           "In the morning I", "The capital of France is", "Hello, my name is"]


def _artifact(folder: Path, n_layers: int, hidden: int, layers: list[int]) -> Path:
    import torch

    from amygdala.artifact import ReadoutArtifact, save_artifact

    generator = torch.Generator().manual_seed(0)
    vectors = {layer: torch.nn.functional.normalize(torch.randn(N_CONCEPTS, hidden, generator=generator), dim=-1)
               for layer in layers}
    concepts = tuple(f"concept_{i:03d}" for i in range(N_CONCEPTS))
    save_artifact(ReadoutArtifact(concepts, tuple(layers), vectors, hidden), folder / "readout.safetensors")
    return folder / "readout.safetensors"


def _child(model: str, tokens: int, reps: int, reading: bool) -> dict[str, object]:
    from vllm import LLM, SamplingParams

    llm = LLM(model=model, dtype="float32", max_model_len=512, max_num_seqs=max(BATCHES),
              kv_cache_memory_bytes=256 << 20, seed=0)
    config = llm.llm_engine.vllm_config
    results: dict[str, object] = {"enforce_eager": config.model_config.enforce_eager,
                                  "compilation_mode": config.compilation_config.mode.name}
    for batch in BATCHES:
        prompts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]

        def run(n: int, prompts: list[str] = prompts) -> float:
            params = SamplingParams(max_tokens=n, temperature=0, ignore_eos=True)
            start = time.perf_counter()
            outputs = llm.generate(prompts, params, use_tqdm=False)
            elapsed = time.perf_counter() - start
            for output in outputs:
                readout = getattr(output.outputs[0], "readout", None)
                assert (readout is not None and len(readout) == n) is reading, "readouts do not match the mode"
            return elapsed

        run(tokens)  # warm-up
        decode = [run(tokens) - run(1) for _ in range(reps)]
        step_s = statistics.median(decode) / (tokens - 1)
        results[f"batch_{batch}"] = {"ms_per_step": step_s * 1e3, "tokens_per_s": batch / step_s}
    if reading:  # the fixed cost of the transport: one empty take = one collective_rpc round trip
        trips = []
        for _ in range(50):
            start = time.perf_counter()
            llm.llm_engine.collective_rpc("amygdala_readout_take", args=([],))
            trips.append(time.perf_counter() - start)
        results["take_rpc_ms"] = statistics.median(trips) * 1e3
    return results


def _run_mode(args: argparse.Namespace, vectors: Path | None) -> dict[str, object]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("VLLM_", "AMYGDALA_VLLM_"))}
    env["VLLM_PLUGINS"] = "amygdala_readout"
    if vectors is not None:
        env["VLLM_READOUT_VECTORS"] = str(vectors)
    command = [sys.executable, __file__, "--child", "--model", args.model, "--tokens", str(args.tokens),
               "--reps", str(args.reps)] + (["--reading"] if vectors is not None else [])
    out = subprocess.run(command, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"bench_decode: the {'on' if vectors else 'off'} run failed:\n{out.stderr[-3000:]}")
    line = [line for line in out.stdout.splitlines() if line.startswith("CHILD ")][-1]
    result: dict[str, object] = json.loads(line[len("CHILD "):])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="HF model folder vLLM can load")
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per request (>= 2)")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions per batch size (median reported)")
    parser.add_argument("--layers", default="", help="comma-separated layers (default: 4 spread over the model)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--reading", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tokens < 2:
        parser.error(f"--tokens must be at least 2, got {args.tokens}")
    if args.child:
        print("CHILD " + json.dumps(_child(args.model, args.tokens, args.reps, args.reading)))
        return
    config = json.loads((Path(args.model) / "config.json").read_text())
    n_layers, hidden = int(config["num_hidden_layers"]), int(config["hidden_size"])
    layers = ([int(x) for x in args.layers.split(",")] if args.layers
              else sorted({round(n_layers * f) for f in (0.25, 0.5, 0.75)} | {n_layers - 1}))
    with tempfile.TemporaryDirectory() as folder:
        vectors = _artifact(Path(folder), n_layers, hidden, layers)
        off, on = _run_mode(args, None), _run_mode(args, vectors)
    report: dict[str, object] = {"bench": "vllm_decode_readout", "model": args.model, "concepts": N_CONCEPTS,
                                 "layers": layers, "tokens": args.tokens, "reps": args.reps, "goal_pct": GOAL_PCT,
                                 "off_mode": [off["compilation_mode"], off["enforce_eager"]],
                                 "on_mode": [on["compilation_mode"], on["enforce_eager"]],
                                 "take_rpc_ms": round(float(on["take_rpc_ms"]), 3)}  # type: ignore[arg-type]
    for batch in BATCHES:
        key = f"batch_{batch}"
        off_b, on_b = off[key], on[key]
        assert isinstance(off_b, dict) and isinstance(on_b, dict)
        report[key] = {"off_ms_per_step": round(off_b["ms_per_step"], 3), "on_ms_per_step": round(on_b["ms_per_step"], 3),
                       "off_tokens_per_s": round(off_b["tokens_per_s"], 1), "on_tokens_per_s": round(on_b["tokens_per_s"], 1),
                       "overhead_pct": round(100 * (on_b["ms_per_step"] / off_b["ms_per_step"] - 1), 2)}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
