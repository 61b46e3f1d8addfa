"""``amygdala eval``: held-out separation, layer choice, cross-talk and the report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from amygdala.cli.app import app

if TYPE_CHECKING:
    from amygdala.examples import Example


def _eval_texts(texts: Path | None, examples: list[Example], count: int) -> list[tuple[str, str]]:
    """(label, text) pairs to read out token by token: the --texts file, else a few held-out positives."""
    from amygdala.readout_view import parse_input_lines
    from amygdala.report import example_texts

    if texts is None:
        return example_texts(examples, count)
    with texts.open(encoding="utf-8") as handle:
        return [(str(item.id), item.text) for item in parse_input_lines(handle, str(texts))]


@app.command("eval")
def eval_command(
    vectors: Path = typer.Option(..., "--vectors", help="readout.safetensors from `amygdala train`."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", help="Manifest (default: readout.json beside --vectors)."),
    training_data_dir: Path = typer.Option(..., "--training-data-dir", help="The <emotion>.jsonl examples (train and heldout splits)."),
    model: str = typer.Option("default", "--model", help="The model the vectors were trained on ('default', 'smollm2', an HF folder or a .gguf)."),
    report_dir: Path = typer.Option(Path("amygdala-out/report"), "--report-dir", help="Where report.json and report.html go."),
    texts: Optional[Path] = typer.Option(None, "--texts", help="JSONL ({\"id\", \"text\"}) or plain lines to read out token by token (default: a few held-out positives)."),
    fail_under: Optional[float] = typer.Option(None, "--fail-under", help="Exit 1 when the mean held-out AUROC at the artifact's layers is below this."),
    pooling: Optional[str] = typer.Option(None, "--pooling", help="last or mean (default: as trained, from the manifest)."),
    skip_tokens: Optional[int] = typer.Option(None, "--skip-tokens", help="With mean pooling (default: as trained)."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="Forward precision (default: as trained)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Texts per forward pass."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Activation cache shared with `train --cache-dir`."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random baseline and the stability halves."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
) -> None:
    """Measure readout vectors on the held-out split: separation, ranking, cross-talk, stability; write a report."""
    from rich.console import Console

    from amygdala.artifact import load_artifact
    from amygdala.evaluation import EvalOptions, evaluate
    from amygdala.examples import read_examples
    from amygdala.layer_selection import LayerCurve
    from amygdala.models import load_model
    from amygdala.report import curve_table, summary_table, write_report

    if fail_under is not None and not 0 <= fail_under <= 1:
        raise typer.BadParameter(f"{fail_under} is not an AUROC: give a value in 0..1, e.g. 0.9", param_hint="--fail-under")
    artifact = load_artifact(vectors, manifest)
    options = EvalOptions.from_artifact(artifact, pooling=pooling, skip_tokens=skip_tokens, batch_size=batch_size,
                                        cache_dir=cache_dir, seed=seed, progress=not no_progress)
    examples = read_examples(training_data_dir, list(artifact.concepts))
    pairs = _eval_texts(texts, examples, 6)
    trained_dtype = artifact.provenance.get("training", {}).get("forward_dtype", "float32")
    loaded = load_model(model, dtype=dtype or trained_dtype)
    evaluation = evaluate(loaded, artifact, examples, options, pairs)
    curve = LayerCurve.from_json(artifact.provenance["layer_selection"]) if "layer_selection" in artifact.provenance else None
    json_path, html_path = write_report(evaluation, report_dir, curve)
    console = Console()
    if curve is not None:
        console.print(curve_table(curve))
    console.print(summary_table(evaluation))
    typer.echo(f"report: {html_path}\njson:   {json_path}")
    mean_auroc = evaluation.summary()["mean_auroc"]
    if fail_under is not None and not mean_auroc >= fail_under:
        typer.echo(f"amygdala: mean held-out AUROC {mean_auroc:.3f} at layers {list(artifact.layers)} is below "
                   f"--fail-under {fail_under:g}", err=True)
        raise typer.Exit(1)
