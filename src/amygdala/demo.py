"""The main job on the embedded defaults: bundled sample graph -> examples -> readout vectors -> eval report.

Each stage meets the next through its files in ``output_dir`` (``examples/``, ``readout.safetensors`` +
``readout.json``, ``report/``), exactly as the ``extract``, ``train`` and ``eval`` commands would write them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from amygdala.artifact import ReadoutArtifact, save_artifact
from amygdala.evaluation import EvalOptions, Evaluation, evaluate
from amygdala.examples import ExtractOptions, read_examples
from amygdala.extraction import ExtractResult, extract
from amygdala.models import DEFAULT_MODEL, load_model
from amygdala.report import example_texts, write_report
from amygdala.sources.graph_file import bundled_sample_path, read_graph_file
from amygdala.training import TrainOptions, train


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
    graph = options.graph or bundled_sample_path()
    examples_dir = options.output_dir / "examples"
    extracted = extract(read_graph_file(graph), ExtractOptions(), examples_dir, f"file {graph}", force=True)
    examples = read_examples(examples_dir)
    seconds["extract"] = time.perf_counter() - start
    loaded = load_model(options.model)
    seconds["load_model"] = time.perf_counter() - start - seconds["extract"]
    artifact = train(loaded, examples, options.train)
    vectors_path = options.output_dir / "readout.safetensors"
    manifest_path = save_artifact(artifact, vectors_path)
    seconds["train"] = time.perf_counter() - start - seconds["extract"] - seconds["load_model"]
    eval_options = EvalOptions.from_artifact(artifact, progress=options.train.progress)
    evaluation = evaluate(loaded, artifact, examples, eval_options, example_texts(examples, 4))
    report_paths = write_report(evaluation, options.output_dir / "report")
    seconds["eval"] = time.perf_counter() - start - sum(seconds.values())
    return DemoResult(extracted, artifact, vectors_path, manifest_path, evaluation, report_paths, seconds)
