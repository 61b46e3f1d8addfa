"""The stages run file to file, as the ``amygdala`` commands run them: validate, read the input files, load the
model, run the stage, write its outputs atomically. Each command calls exactly one of these functions (``demo``
chains them); the stages themselves (``training.train``, ``evaluation.evaluate``, ``readout.read_texts``) stay
plain functions of typed values, so callers can compose them differently.

``model`` is a model spec (``models.resolve_model_path``) or a model already loaded, so a caller that runs
several stages loads it once. ``device`` None picks ``cuda`` when one is available, else the CPU, and ``dtype``
None bf16 on a GPU, fp32 on a CPU (``devices``). Under torchrun or ``accelerate launch`` (``world`` None reads
the launcher's environment) ``train_files`` and ``evaluate_files`` run data-parallel: every rank takes its
shard, and rank 0 alone writes, after every rank has finished.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from amygdala.artifact import (
    ReadoutArtifact,
    artifact_paths,
    elh_path_for,
    load_artifact,
    manifest_path_for,
    save_artifact,
)
from amygdala.evaluation.checks import CheckOptions, check_battery_inputs, run_checks
from amygdala.evaluation.results import EvalOptions, Evaluation
from amygdala.evaluation.stage import check_inputs, evaluate
from amygdala.extraction.examples import Example, read_example_dirs
from amygdala.forward.devices import describe, resolve_device, resolve_dtype
from amygdala.forward.distributed import barrier, joined
from amygdala.forward.launcher import SINGLE, DistributedError, World, world_from_env
from amygdala.forward.models import DEFAULT_MODEL, LoadedModel, load_model
from amygdala.forward.pooling import Pooling, PoolingError, PoolingSpec
from amygdala.outputs.atomic import check_output_file, output_lock
from amygdala.readout.attach import read_texts
from amygdala.readout.projection import LayerCombine, ReadoutError, ReadoutOptions, TextReadout, check_options
from amygdala.readout.view import InputText, parse_input_lines, readout_record, write_html, write_jsonl
from amygdala.training.stage import TrainOptions, train

ModelSource = str | LoadedModel


def _target(model: ModelSource, device: str | None, world: World = SINGLE) -> torch.device:
    """The device the stage runs on: a loaded model's, else ``device`` resolved (this rank's GPU under torchrun)."""
    return model.device if isinstance(model, LoadedModel) else resolve_device(device, world)


def _loaded(model: ModelSource, *, dtype: str | None, target: torch.device,
            device_map: str | dict[str, object] | None = None) -> LoadedModel:
    if isinstance(model, LoadedModel):
        return model
    return load_model(model, dtype=resolve_dtype(dtype, target), device=str(target), device_map=device_map)


@dataclass(frozen=True)
class TrainRun:
    """What ``train_files`` trained and wrote (on rank 0 of a data-parallel run; elsewhere nothing is written),
    where, and how long it took (model load included)."""

    artifact: ReadoutArtifact
    vectors_path: Path
    manifest_path: Path
    elh_path: Path | None
    seconds: float
    device: str
    world: World


def _dirs(training_data_dir: Path | Sequence[Path]) -> list[Path]:
    return [Path(training_data_dir)] if isinstance(training_data_dir, (str, Path)) else list(training_data_dir)


def train_files(training_data_dir: Path | Sequence[Path], output: Path, options: TrainOptions = TrainOptions(), *,
                model: ModelSource = DEFAULT_MODEL, dtype: str | None = None, device: str | None = None,
                device_map: str | dict[str, object] | None = None, emotions: Sequence[str] | None = None,
                manifest: Path | None = None, write_elh: bool = False, world: World | None = None) -> TrainRun:
    """``<emotion>.jsonl`` examples (of one dir, or several read together: a graph's and a synthesized one)
    -> ``readout.safetensors`` + manifest (+ the eLH file with ``write_elh``).

    Every output path is checked before the model loads, and the output's lock is held for the whole run (by
    rank 0 of a data-parallel run, the one that writes): a second train into the same output is refused
    (``OutputBusyError``), never a lost update."""
    world = world_from_env() if world is None else world
    if world.is_parallel and device_map is not None:
        raise DistributedError("a data-parallel run holds one model per rank: drop --device-map, or launch one "
                               "process that spreads the model with it")
    examples = read_example_dirs(_dirs(training_data_dir), list(emotions) if emotions else None)
    check_output_file(*artifact_paths(output, manifest, write_elh))
    start = time.perf_counter()
    target = _target(model, device, world)
    with output_lock(output) if world.is_main else nullcontext(), joined(world, target):
        loaded = _loaded(model, dtype=dtype, target=target, device_map=device_map)
        artifact = train(loaded, examples, options, world)
        barrier(world)  # every rank finished: only now may rank 0 write
        manifest_path = manifest or manifest_path_for(output)
        if world.is_main:
            manifest_path = save_artifact(artifact, output, manifest_path=manifest, write_elh=write_elh)
    return TrainRun(artifact, output, manifest_path, elh_path_for(output) if write_elh else None,
                    time.perf_counter() - start, describe(loaded.device), world)


@dataclass(frozen=True)
class EvalRun:
    """What ``evaluate_files`` measured, where the report went (rank 0 writes it), and on which device."""

    artifact: ReadoutArtifact
    evaluation: Evaluation
    json_path: Path
    html_path: Path
    device: str
    world: World


def _eval_texts(texts: Path | None, examples: list[Example], count: int) -> list[tuple[str, str]]:
    """(label, text) pairs to read out token by token: the ``texts`` file, else a few held-out positives."""
    from amygdala.evaluation.report import example_texts  # the report (and matplotlib) only where a stage needs it

    if texts is None:
        return example_texts(examples, count)
    with texts.open(encoding="utf-8") as handle:
        return [(str(item.id), item.text) for item in parse_input_lines(handle, str(texts))]


def evaluate_files(vectors: Path, training_data_dir: Path | Sequence[Path], report_dir: Path,
                   options: EvalOptions = EvalOptions(), *, manifest: Path | None = None,
                   model: ModelSource = DEFAULT_MODEL, dtype: str | None = None, device: str | None = None,
                   texts: Path | None = None, n_texts: int = 6,
                   pooling: Pooling | None = None, skip_tokens: int | None = None,
                   world: World | None = None, checks: CheckOptions = CheckOptions()) -> EvalRun:
    """Evaluate an artifact on its examples' held-out split and write ``report.json`` + ``report.html`` (rank 0
    of a data-parallel run writes them; every rank pools its shard).

    ``pooling`` / ``skip_tokens`` override the trained pooling spec (``options.pooling`` None: as trained);
    ``dtype`` None: the trained forward dtype. ``checks.checks`` names the validation battery's checks to run
    (rank 0 runs them, pooled as the evaluation pools; their data files are read before the model loads)."""
    from amygdala.evaluation.report import REPORT_HTML, REPORT_JSON, write_report

    world = world_from_env() if world is None else world
    check_output_file(Path(report_dir) / REPORT_JSON, Path(report_dir) / REPORT_HTML)  # before any model work
    artifact = load_artifact(vectors, manifest)
    if pooling is not None or skip_tokens is not None:
        spec = options.pooling or artifact.pooling
        options = replace(options, pooling=spec.overridden(pooling=pooling, skip_tokens=skip_tokens))
    examples = read_example_dirs(_dirs(training_data_dir), list(artifact.concepts))
    check_inputs(artifact, examples, options.resolved(artifact))  # before the model loads
    check_battery_inputs(checks)
    pairs = _eval_texts(texts, examples, n_texts)
    trained_dtype = artifact.record.forward_dtype if artifact.record is not None else "float32"
    target = _target(model, device, world)
    with joined(world, target):
        loaded = _loaded(model, dtype=dtype or trained_dtype, target=target)
        evaluation = evaluate(loaded, artifact, examples, options, pairs, world)
        if checks.checks and world.is_main:
            battery = replace(checks, spec=evaluation.options.spec, batch_size=options.batch_size,
                              batch_tokens=options.batch_tokens)
            evaluation = replace(evaluation, battery=run_checks(loaded, artifact, battery))
        barrier(world)
        curve = artifact.record.layer_curve if artifact.record is not None else None
        paths = (write_report(evaluation, report_dir, curve) if world.is_main
                 else (report_dir / REPORT_JSON, report_dir / REPORT_HTML))
    return EvalRun(artifact, evaluation, *paths, describe(loaded.device), world)


@dataclass(frozen=True)
class ReadoutRun:
    """What ``read_out_files`` read and wrote, and on which device."""

    artifact: ReadoutArtifact
    items: tuple[InputText, ...]
    readouts: tuple[TextReadout, ...]
    spec: PoolingSpec
    device: str = "cpu"


def read_input(source: str) -> list[InputText]:
    """Texts from a JSONL / plain-lines file, or from stdin for ``-``."""
    if source == "-":
        return parse_input_lines(sys.stdin, "stdin")
    with Path(source).open(encoding="utf-8") as handle:
        return parse_input_lines(handle, source)


def read_out_files(vectors: Path, source: str, output: Path, options: ReadoutOptions = ReadoutOptions(), *,
                   manifest: Path | None = None, model: ModelSource = DEFAULT_MODEL, dtype: str | None = None,
                   device: str | None = None, pooling: Pooling | None = None, skip_tokens: int | None = None,
                   chat_template: bool | None = None, per_token: bool = False, html: Path | None = None,
                   progress: bool = False, combine: LayerCombine | None = None) -> ReadoutRun:
    """Read concepts out of the texts of ``source`` into ``output`` (JSONL, one line per text; pooled as trained
    unless ``pooling`` / ``skip_tokens`` / ``chat_template`` override it), and an HTML page with ``html``.
    ``combine`` (with z-scores) writes one multi-layer readout per concept (``readout.combine_layers``)."""
    check_output_file(Path(output), *([Path(html)] if html is not None else []))  # before any model work
    if combine is not None and not options.zscore:
        raise ReadoutError(f"combining layers ({combine}) averages z-scores: add --zscore")
    items = read_input(source)
    artifact = load_artifact(vectors, manifest)
    check_options(artifact, options)
    spec = artifact.pooling.overridden(pooling=pooling, skip_tokens=skip_tokens, chat_template=chat_template)
    if problems := spec.problems():
        raise PoolingError("readout pooling: " + "; ".join(problems))
    loaded = _loaded(model, dtype=dtype, target=_target(model, device))
    readouts = read_texts(loaded, artifact, [item.text for item in items], options, spec=spec, progress=progress)
    write_jsonl(output, [readout_record(item, readout, artifact, per_token=per_token, spec=spec, zscore=options.zscore,
                                        combine=combine) for item, readout in zip(items, readouts, strict=True)])
    if html is not None:
        write_html(html, list(zip(items, readouts, strict=True)), artifact, zscore=options.zscore)
    return ReadoutRun(artifact, tuple(items), tuple(readouts), spec, describe(loaded.device))
