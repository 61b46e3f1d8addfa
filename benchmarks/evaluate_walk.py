"""The walk of ``pipeline.evaluate_files``: which amygdala modules one evaluation enters, and how often.

A module is *entered* when a function of it is called from a function of another module (``sys.setprofile``
call events); the figure is how far one stage's path spreads across the package, the layout issue's measure.
Prints one JSON line: ``{"modules_entered", "entries": {module: count}}``.

    python benchmarks/evaluate_walk.py --vectors OUT/readout.safetensors --examples OUT/examples
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any


def _module(frame: FrameType | None) -> str:
    return frame.f_globals.get("__name__", "") if frame is not None else ""


def walk(vectors: Path, examples: Path, model: str) -> dict[str, Any]:
    from amygdala.pipeline import evaluate_files

    entries: Counter[str] = Counter()

    def profile(frame: FrameType, event: str, _arg: object) -> None:
        if event != "call":
            return
        callee = _module(frame)
        if callee.startswith("amygdala.") and callee != _module(frame.f_back):
            entries[callee] += 1

    with tempfile.TemporaryDirectory() as report_dir:
        sys.setprofile(profile)
        try:
            evaluate_files(vectors, examples, Path(report_dir), model=model)
        finally:
            sys.setprofile(None)
    return {"modules_entered": len(entries), "entries": dict(entries.most_common())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=Path, required=True)
    parser.add_argument("--examples", type=Path, required=True)
    parser.add_argument("--model", default="default")
    args = parser.parse_args(argv)
    print(json.dumps(walk(args.vectors, args.examples, args.model)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
