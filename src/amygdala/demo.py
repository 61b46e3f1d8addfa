"""The main job on the embedded defaults: bundled sample graph -> examples -> readout vectors -> eval report.

Each stage meets the next through its files in ``output_dir`` (``examples/``, ``readout.safetensors`` +
``readout.json``, ``activations/``, ``report/``), exactly as the ``extract``, ``train`` and ``eval`` commands
would write them. Training keeps its pooled activations in ``activations/`` and evaluation reads them there, so
each text is forwarded once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from amygdala.artifact import ReadoutArtifact
from amygdala.evaluation.results import EvalOptions, Evaluation
from amygdala.extraction.scoring import ExtractOptions
from amygdala.extraction.sources.graph_file import bundled_sample_path, read_graph_file
from amygdala.extraction.stage import ExtractResult, extract
from amygdala.forward.devices import describe, resolve_device, resolve_dtype
from amygdala.forward.launcher import SINGLE
from amygdala.forward.models import DEFAULT_MODEL, load_model
from amygdala.pipeline import evaluate_files, train_files
from amygdala.training.stage import TrainOptions


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
    """Training options (the measured-best defaults); without a ``cache_dir``, ``output_dir/activations``."""
    device: str | None = None
    """cpu, cuda, cuda:N or mps; None: cuda when available, else cpu."""
    dtype: str | None = None
    """Forward precision; None: bf16 on a GPU, float32 on a CPU."""


@dataclass(frozen=True)
class DemoResult:
    extracted: ExtractResult
    device: str
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
    target = resolve_device(options.device)
    loaded = load_model(options.model, dtype=resolve_dtype(options.dtype, target), device=str(target))
    lap("load_model")
    train_options = replace(options.train, cache_dir=options.train.cache_dir or options.output_dir / "activations")
    trained = train_files(examples_dir, options.output_dir / "readout.safetensors", train_options, model=loaded,
                          world=SINGLE)
    lap("train")
    eval_options = EvalOptions(batch_size=train_options.batch_size, batch_tokens=train_options.batch_tokens,
                               cache_dir=train_options.cache_dir, progress=options.train.progress)
    evaluated = evaluate_files(trained.vectors_path, examples_dir, options.output_dir / "report", eval_options,
                               model=loaded, n_texts=4, world=SINGLE)
    lap("eval")
    return DemoResult(extracted, describe(target), trained.artifact, trained.vectors_path, trained.manifest_path,
                      evaluated.evaluation, (evaluated.json_path, evaluated.html_path), seconds)
