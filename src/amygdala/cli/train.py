"""``amygdala train`` and ``bench train``: examples -> readout vectors."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import typer

from amygdala.cli import options
from amygdala.cli.app import app, bench_app
from amygdala.outputs.sanitise import terminal_line

if TYPE_CHECKING:
    from amygdala.pipeline import TrainRun


def _summary(run: TrainRun) -> str:
    artifact, record = run.artifact, run.artifact.record
    assert record is not None  # train always records how it trained
    counts = ", ".join(f"{terminal_line(concept)} {positive}/{negative}" for concept, (positive, negative) in record.counts.items())
    lines = [f"trained {len(artifact.concepts)} concepts x {len(artifact.layers)} layers {list(artifact.layers)} "
             f"on {record.n_unique_texts} unique texts in {run.seconds:.1f} s "
             f"({record.method}, {record.pooling.pooling} pooling, {record.forward_dtype} forward on {run.device}"
             + (f", data-parallel over {run.world.world_size} ranks)" if run.world.is_parallel else ")"),
             f"counts (positive/negative): {counts if len(counts) < 400 else counts[:400] + ' ...'}",
             *([f"shrinkage chosen per layer: {', '.join(f'{k}: {v:.3f}' for k, v in record.shrinkage.items())}"]
               if record.shrinkage else []),
             *([f"removed {record.neutral_pcs} neutral principal component(s) per layer"] if record.neutral_pcs else []),
             *([f"lexical remedy: {record.lexical}"] if record.lexical != "none" else []),
             f"vectors:  {run.vectors_path}", f"manifest: {run.manifest_path}"]
    return "\n".join(lines + ([f"eLH:      {run.elh_path}"] if run.elh_path else []))


@app.command("train")
def train_command(
    training_data_dir: list[Path] = typer.Option(..., "--training-data-dir", help="Folder of <emotion>.jsonl examples; repeat it to train on several together (e.g. an extract dir and a synthesize dir)."),
    model: str = options.MODEL,
    target_layers: str | None = typer.Option(None, "--target-layers", help="Decoder blocks, e.g. 5,9,12,15 (layer_<idx> = output of block idx), or auto[:K]: the K (default 4) best by validation AUROC on the train split. Default: 4 layers over 40-90% of the depth."),
    output: Path = typer.Option(Path("readout.safetensors"), "--output", help="Vectors file; readout.json goes beside it."),
    manifest: Path | None = typer.Option(None, "--manifest", help="Manifest path (default: <output>.json)."),
    device: str | None = options.DEVICE,
    dtype: str | None = typer.Option(None, "--dtype", help="Forward precision: float32, bf16 or fp16 (default: bf16 on a GPU, float32 on a CPU; statistics stay fp64)."),
    batch_size: int | None = options.BATCH_SIZE,
    batch_tokens: int | None = options.BATCH_TOKENS,
    pooling: str = typer.Option("mean_last", "--pooling", help="mean_last (0.8 mean + 0.2 last; the default), mean (non-pad tokens after --skip-tokens) or last (last non-pad token)."),
    skip_tokens: int | None = typer.Option(None, "--skip-tokens", help="With --pooling mean or mean_last: skip each text's first K tokens (BOS counts as one). Default: 1 for those, 0 for last."),
    method: str = typer.Option("lda_diagonal", "--method", help="Direction method: diff_of_means, mean_centered, lda, lda_diagonal (diagonal shrinkage 0.9), or lda_oas / lda_rblw (diagonal shrinkage chosen per layer from the data by OAS / Rao-Blackwell Ledoit-Wolf)."),
    remove_neutral_pcs: int = typer.Option(0, "--remove-neutral-pcs", help="Project out the top K principal components of the neutral train texts (positive for no concept) before fitting; 0: none."),
    lexical: str = typer.Option("negatives", "--lexical", help="Keep vectors from firing on a concept's name alone: negatives (the default: mix the mean of bundled template texts that name the concepts into each concept's negatives), project (remove the bare name's direction from each vector), both, or none (the original recipe)."),
    chat_template: bool = typer.Option(False, "--chat-template", help="Wrap texts in the model's chat template."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Keep pooled activations here; reruns skip the model and resume."),
    emotions: str | None = typer.Option(None, "--emotions", help="Comma-separated emotions to train (default: all files)."),
    layout: str = typer.Option("layers", "--format", help="layers (one tensor per layer), or eLH to also write the older (concepts, layers, hidden) file."),
    max_length: int | None = typer.Option(None, "--max-length", help="Keep each text's first N tokens."),
    no_progress: bool = options.NO_PROGRESS,
    device_map: str | None = typer.Option(None, "--device-map", help="Spread a model larger than one device (accelerate): 'auto', 'balanced', or a JSON {module: device} map."),
) -> None:
    """Train CAA readout vectors (one forward per unique text) into readout.safetensors + readout.json."""
    from rich.console import Console

    from amygdala.forward.pooling import Pooling, PoolingSpec
    from amygdala.pipeline import train_files
    from amygdala.training.directions import MethodName
    from amygdala.training.lexical import LexicalRule
    from amygdala.training.stage import TrainOptions

    layers = options.parse_target_layers(target_layers)
    if layout not in ("layers", "eLH"):
        raise typer.BadParameter(f"{layout!r} is not 'layers' or 'eLH'", param_hint="--format")
    spec = PoolingSpec(cast(Pooling, pooling), skip_tokens, chat_template, max_length)
    train_options = TrainOptions(target_layers=layers, pooling=spec, method=cast(MethodName, method),
                                 neutral_pcs=remove_neutral_pcs, lexical=cast(LexicalRule, lexical),
                                 batch_size=batch_size, batch_tokens=batch_tokens, cache_dir=cache_dir,
                                 progress=not no_progress and options.is_main_rank())
    run = train_files(training_data_dir, output, train_options, model=model, dtype=dtype, device=device,
                      device_map=options.parse_device_map(device_map), emotions=options.parse_names(emotions),
                      manifest=manifest, write_elh=layout == "eLH")
    if not run.world.is_main:  # rank 0 reports for the whole data-parallel run
        return
    if run.artifact.record is not None and run.artifact.record.layer_curve is not None:
        from amygdala.evaluation.report import curve_table

        Console().print(curve_table(run.artifact.record.layer_curve))
    typer.echo(_summary(run))


@bench_app.command("train", context_settings=options.PASS_THROUGH)
def bench_train_command(
    context: typer.Context,
    quick: bool = typer.Option(False, "--quick", help="Fewer examples: a smoke run, not the reported figures."),
    threads: int = typer.Option(0, "--threads", help="torch threads (0: torch's default)."),
) -> None:
    """Train-stage benchmark (train vs a bare forward; any other arguments, e.g. --device cuda --random-model
    qwen3-32b, go to amygdala.bench.train: `amygdala bench train -- --help` lists them); without the optional
    steering-vectors peer its columns are left out; the last line is one JSON object."""
    options.run_benchmark("train", [*(["--quick"] if quick else []), "--threads", str(threads), *context.args])
