"""``amygdala extract`` on a large versioned memory log: wall time and peak RSS against the goals (60 s, 1 GB).

Generates a log the way real stores export one: ``--nodes`` nodes (default 100,000) written at version 1, then
revisions (``--revised``, default 20% of the nodes, version 2, new text and tags) and deletions (``--deleted``,
default 2%, ``deleted: true`` at the next version) appended in shuffled order (a revision after a deletion
brings the node back). Records carry uuid, version, epoch
timestamps (integers, some floats) and fields amygdala ignores (weight, category, provenance, emotion); bodies are
about 300 characters of prose with a tag line of 2-4 of 18 emotions; 5% of the nodes are untagged.

The extract runs as a real ``python -m amygdala.cli extract --memory-file LOG`` subprocess; its peak RSS comes
from ``wait4`` (the child's ``ru_maxrss``). The run is checked: ``extract.json``'s log counts must equal the
generator's. The last output line is one JSON object.

    python benchmarks/bench_extract.py [--nodes 100000] [--revised 0.2] [--deleted 0.02] [--seed 0] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EMOTIONS = ("amused", "anxious", "calm", "clarity", "curiosity", "excited", "frustrated", "grateful", "guilty",
            "hopeful", "lonely", "nostalgic", "overwhelmed", "proud", "relieved", "sad", "tired", "warmth")
WORDS = ("the build", "a reviewer", "the index", "our mirror", "the nightly job", "Rosa", "the parser", "a cache",
         "the release", "the queue", "went through", "stalled on", "rewrote", "measured", "skipped", "found",
         "after lunch", "before the deadline", "on the second try", "without a warning", "again", "quietly")
GOAL_SECONDS = 60.0
GOAL_RSS_MB = 1024.0


def _content(rng: random.Random, tagged: bool) -> str:
    body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(24, 36))) + "."
    if not tagged:
        return body
    tags = rng.sample(EMOTIONS, rng.randint(2, 4))
    return body + "\n" + " ".join(f"{name}:{rng.randint(0, 10)}" for name in tags)


def _record(rng: random.Random, index: int, version: int, **fields: object) -> dict[str, object]:
    stamp = 1_700_000_000 + 60 * index + 86_400 * version
    return {"uuid": f"{index:08x}-0000-4000-8000-{index:012x}", "version": version, "key": f"node-{index:06}",
            "node_type": rng.choice(("journal", "daily_digest", "pattern")),
            "timestamp": stamp if index % 10 else stamp + 0.25, "weight": round(rng.random(), 3),
            "category": "work", "provenance": {"agent": "bench", "session": index % 97}, **fields}


def generate_log(path: Path, nodes: int, revised: float, deleted: float, seed: int) -> dict[str, int]:
    """Write the log to ``path``; returns the counts a correct reader must report."""
    rng = random.Random(seed)
    revised_ids = set(rng.sample(range(nodes), int(nodes * revised)))
    deleted_ids = set(rng.sample(range(nodes), int(nodes * deleted)))
    later = [(index, "revise") for index in revised_ids] + [(index, "delete") for index in deleted_ids]
    rng.shuffle(later)
    versions = dict.fromkeys(range(nodes), 1)
    last_change: dict[int, str] = {}
    with path.open("w", encoding="utf-8") as out:
        for index in range(nodes):
            out.write(json.dumps(_record(rng, index, 1, content=_content(rng, rng.random() >= 0.05),
                                         emotion=rng.randint(0, 10))) + "\n")
        for index, change in later:  # a revision after a deletion brings the node back, as in a real store
            versions[index] += 1
            last_change[index] = change
            fields = {"deleted": True} if change == "delete" else {"content": _content(rng, True)}
            out.write(json.dumps(_record(rng, index, versions[index], **fields)) + "\n")
    records = nodes + len(later)
    gone = sum(1 for change in last_change.values() if change == "delete")
    return {"records": records, "superseded": records - nodes, "deleted": gone, "kept": nodes - gone}


def run_extract(log: Path, output_dir: Path) -> tuple[float, float, str]:
    """Run the CLI extract in a subprocess: (wall seconds, peak RSS in MB, its stdout + stderr)."""
    argv = [sys.executable, "-m", "amygdala.cli", "extract", "--memory-file", str(log), "--output-dir",
            str(output_dir)]
    start = time.perf_counter()
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        output.seek(0)
        said = output.read().decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"amygdala extract exited with {process.returncode}: {said[-2000:]}")
    return seconds, usage.ru_maxrss / 1024, said  # ru_maxrss is in KiB on Linux


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--revised", type=float, default=0.2)
    parser.add_argument("--deleted", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="10,000 nodes: a smoke run")
    args = parser.parse_args(argv)
    nodes = 10_000 if args.quick else args.nodes
    with tempfile.TemporaryDirectory(prefix="bench-extract-") as folder:
        log = Path(folder) / "log.jsonl"
        start = time.perf_counter()
        expected = generate_log(log, nodes, args.revised, args.deleted, args.seed)
        print(f"generated {expected['records']:,} records ({log.stat().st_size / 1e6:.0f} MB) in "
              f"{time.perf_counter() - start:.1f} s; extracting...", file=sys.stderr)
        seconds, rss_mb, said = run_extract(log, Path(folder) / "out")
        manifest = json.loads((Path(folder) / "out" / "extract.json").read_text())
        if manifest["log"] != expected:
            raise RuntimeError(f"extract.json log counts {manifest['log']} != the generator's {expected}")
        print(said.strip().splitlines()[-1], file=sys.stderr)
        result: dict[str, object] = {
            "nodes": nodes, "records": expected["records"], "log_mb": round(log.stat().st_size / 1e6, 1),
            "extract_s": round(seconds, 2), "peak_rss_mb": round(rss_mb, 1),
            "extract_s_vs_goal": round(seconds / GOAL_SECONDS, 3), "peak_rss_vs_goal": round(rss_mb / GOAL_RSS_MB, 3),
            "goals_met": seconds < GOAL_SECONDS and rss_mb < GOAL_RSS_MB,
            "emotions": len(manifest["emotions"]), "usable_nodes": manifest["nodes"]["usable"],
            "untagged_used": manifest["nodes"]["untagged_used"], "log": manifest["log"],
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
