"""Smoke test of the torch-only GPU benchmark: it must run (and check its graph's readout) on a CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_readout_op_benchmark_runs_tiny_on_cpu() -> None:
    out = subprocess.run([sys.executable, str(BENCHMARKS / "bench_readout_op_gpu.py"), "--device", "cpu", "--tiny",
                          "--iters", "3"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["shape"] == "tiny" and report["concepts"] == 171
    assert report["tokens_1"]["bare_ms"] > 0 and report["tokens_16"]["readout_ms"] > 0
