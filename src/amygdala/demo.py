"""The main job on the embedded defaults: bundled sample graph -> examples -> readout vectors -> eval report.

Each stage meets the next through its files in ``output_dir`` (``examples/``, ``readout.safetensors`` +
``readout.json``, ``report/``), exactly as the ``extract``, ``train`` and ``eval`` commands would write them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from amygdala.artifact import ReadoutArtifact
from amygdala.evaluation import EvalOptions, Evaluation
from amygdala.examples import ExtractOptions
from amygdala.extraction import ExtractResult, extract
from amygdala.models import DEFAULT_MODEL, load_model
from amygdala.pipeline import evaluate_files, train_files
from amygdala.sources.graph_file import bundled_sample_path, read_graph_file
from amygdala.training import TrainOptions


@dataclass(frozen=True)
class DemoOptions:
    """What the demo runs on; every default is the embedded one."""

    output_dir: Path = Path("amygdala-out")
    """Where examples/, readout.safetensors, readout.json and report/ go (reruns replace amygdala's files)."""
    model: str = DEFAULT_MODEL
    """Model spec (see ``models.resolve_model_path``); default: the embedded Gemma 3 270M."""
    graph: Path | None = None
    """A memory-graph JSONL file; None: the bundled sample."""
    train: TrainOptions = field(default_factory=TrainOptions)
    """Training options (the measured-best defaults)."""


@dataclass(frozen=True)
class DemoResult:
    extracted: ExtractResult
    artifact: ReadoutArtifact
    vectors_path: Path
    manifest_path: Path
    evaluation: Evaluation
    report_paths: tuple[Path, Path]
    seconds: dict[str, float]


def run_demo(options: DemoOptions = DemoOptions()) -> DemoResult:
    """extract -> train -> eval on the embedded defaults; returns what each stage produced and how long it took."""
    seconds: dict[str, float] = {}
    start = time.perf_counter()

    def lap(stage: str) -> None:
        seconds[stage] = time.perf_counter() - start - sum(seconds.values())

    graph = options.graph or bundled_sample_path()
    examples_dir = options.output_dir / "examples"
    extracted = extract(read_graph_file(graph), ExtractOptions(), examples_dir, f"file {graph}", force=True)
    lap("extract")
    loaded = load_model(options.model)
    lap("load_model")
    trained = train_files(examples_dir, options.output_dir / "readout.safetensors", options.train, model=loaded)
    lap("train")
    evaluated = evaluate_files(trained.vectors_path, examples_dir, options.output_dir / "report",
                               EvalOptions(progress=options.train.progress), model=loaded, n_texts=4)
    lap("eval")
    return DemoResult(extracted, trained.artifact, trained.vectors_path, trained.manifest_path, evaluated.evaluation,
                      (evaluated.json_path, evaluated.html_path), seconds)
