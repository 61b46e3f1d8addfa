"""``amygdala eval``: held-out separation, layer choice, cross-talk and the report."""

from __future__ import annotations

from pathlib import Path

import typer

from amygdala.cli import options
from amygdala.cli.app import app


@app.command("eval")
def eval_command(
    vectors: Path = typer.Option(..., "--vectors", help="readout.safetensors from `amygdala train`."),
    manifest: Path | None = typer.Option(None, "--manifest", help="Manifest (default: readout.json beside --vectors)."),
    training_data_dir: list[Path] = typer.Option(..., "--training-data-dir", help="The <emotion>.jsonl examples (train and heldout splits); repeat it for several dirs (graph and synthetic: the report adds an across-sources table)."),
    model: str = typer.Option("default", "--model", help="The model the vectors were trained on ('default', 'smollm2', an HF folder or a .gguf)."),
    report_dir: Path = typer.Option(Path("amygdala-out/report"), "--report-dir", help="Where report.json and report.html go."),
    texts: Path | None = typer.Option(None, "--texts", help="JSONL ({\"id\", \"text\"}) or plain lines to read out token by token (default: a few held-out positives)."),
    fail_under: float | None = typer.Option(None, "--fail-under", help="Exit 1 when the mean held-out AUROC at the artifact's layers is below this."),
    pooling: str | None = typer.Option(None, "--pooling", help="last, mean or mean_last (default: as trained, from the manifest)."),
    skip_tokens: int | None = typer.Option(None, "--skip-tokens", help="With mean or mean_last pooling (default: as trained)."),
    device: str | None = options.DEVICE,
    dtype: str | None = typer.Option(None, "--dtype", help="Forward precision (default: as trained)."),
    batch_size: int | None = options.BATCH_SIZE,
    batch_tokens: int | None = options.BATCH_TOKENS,
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Activation cache shared with `train --cache-dir`: the train texts are not forwarded again."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random baseline, the stability halves, the folds and the bootstrap."),
    folds: int | None = typer.Option(None, "--folds", help="Also cross-validate by node over both splits with K folds (>= 2): per-concept AUROC, top-1/top-3 and the random baseline with bootstrap 95% CIs; --fail-under then gates on the cross-validated mean AUROC."),
    valence: bool = typer.Option(False, "--valence-check", help="Also correlate a valence axis built from the vectors with human ratings of 600 movie-review sentences (VADER ground truth), beside VADER's own rho."),
    valence_sentences: int | None = typer.Option(None, "--valence-sentences", help="With --valence-check, only the first N of the 600 sentences (quicker, wider CI)."),
    checks: str | None = typer.Option(None, "--checks", help="Also run the validation battery: 'all' or a comma list of sweeps, negation, scenarios, top_tokens, logit_lens, chat_roles."),
    sweep_templates: Path | None = typer.Option(None, "--sweep-templates", help="More intensity-sweep templates (JSONL: id, template with {x}, values, rises, falls)."),
    scenarios: Path | None = typer.Option(None, "--scenarios", help="More implicit scenarios (JSONL: concept, text not naming it)."),
    corpus: Path | None = typer.Option(None, "--corpus", help="More held-out text for the top tokens (plain lines or JSONL with 'text')."),
    corpus_sentences: int | None = typer.Option(None, "--corpus-sentences", help="Top tokens and arousal on only the first N of their 600 bundled sentences each (quicker)."),
    no_progress: bool = options.NO_PROGRESS,
) -> None:
    """Measure readout vectors on the held-out split: separation, ranking, cross-talk, stability; write a report."""
    from rich.console import Console

    from amygdala.evaluation.checks import CheckOptions, parse_checks
    from amygdala.evaluation.report import (
        battery_table,
        check_lines,
        concept_space_line,
        cross_source_table,
        crossval_table,
        curve_table,
        summary_table,
    )
    from amygdala.evaluation.results import EvalOptions
    from amygdala.outputs.sanitise import terminal_line
    from amygdala.pipeline import evaluate_files

    if fail_under is not None and not 0 <= fail_under <= 1:
        raise typer.BadParameter(f"{fail_under} is not an AUROC: give a value in 0..1, e.g. 0.9", param_hint="--fail-under")
    eval_options = EvalOptions(batch_size=batch_size, batch_tokens=batch_tokens, cache_dir=cache_dir, seed=seed,
                               progress=not no_progress and options.is_main_rank(), folds=folds,
                               valence_check=valence, valence_sentences=valence_sentences)
    battery = CheckOptions(parse_checks(checks) if checks is not None else (), seed=seed,
                           sweep_templates=sweep_templates, scenarios=scenarios, corpus=corpus,
                           corpus_sentences=corpus_sentences)
    run = evaluate_files(vectors, training_data_dir, report_dir, eval_options, manifest=manifest, model=model,
                         dtype=dtype, device=device, texts=texts, pooling=options.parse_pooling(pooling),
                         skip_tokens=skip_tokens, checks=battery)
    crossval = run.evaluation.crossval
    mean_auroc = run.evaluation.summary()["mean_auroc"] if crossval is None else crossval.mean_auroc.estimate
    gated = "held-out" if crossval is None else f"{crossval.folds}-fold"
    failed = fail_under is not None and not mean_auroc >= fail_under  # every rank exits alike
    if run.world.is_main:
        console = Console()
        if run.artifact.record is not None and run.artifact.record.layer_curve is not None:
            console.print(curve_table(run.artifact.record.layer_curve))
        console.print(summary_table(run.evaluation))
        if crossval is not None:
            console.print(crossval_table(crossval))
        if run.evaluation.cross_source is not None:
            console.print(cross_source_table(run.evaluation.cross_source))
        for line in [*check_lines(run.evaluation), concept_space_line(run.evaluation.concept_space)]:
            if line is not None:
                typer.echo(terminal_line(line))
        if run.evaluation.battery:
            console.print(battery_table(run.evaluation))
        typer.echo(f"report: {run.html_path}\njson:   {run.json_path}  (pooled on {run.device})")
        if failed:
            typer.echo(f"amygdala: mean {gated} AUROC {mean_auroc:.3f} at layers {list(run.artifact.layers)} is "
                       f"below --fail-under {fail_under:g}", err=True)
    if failed:
        raise typer.Exit(1)
