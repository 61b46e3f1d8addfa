"""``amygdala demo``: the main job on the embedded defaults."""

from __future__ import annotations

from pathlib import Path

import typer

from amygdala.cli import options
from amygdala.cli.app import app


@app.command("demo")
def demo_command(
    output_dir: Path = typer.Option(Path("amygdala-out"), "--output-dir", help="Where examples/, readout.safetensors, readout.json and report/ go."),
    model: str = options.MODEL,
    graph: Path | None = typer.Option(None, "--memory-file", help="A memory-graph JSONL file (default: the bundled sample)."),
    target_layers: str | None = typer.Option(None, "--target-layers", help="Decoder blocks, or auto[:K] (default: 4 layers over 40-90% of the depth)."),
    device: str | None = options.DEVICE,
    dtype: str | None = options.FORWARD_DTYPE,
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bars."),
) -> None:
    """The main job on the embedded defaults: extract the bundled sample, train readout vectors, evaluate them."""
    from rich.console import Console

    from amygdala.demo import DemoOptions, run_demo
    from amygdala.evaluation.report import summary_table
    from amygdala.outputs.sanitise import terminal_line
    from amygdala.training.stage import TrainOptions

    layers = options.parse_target_layers(target_layers)
    console = Console(stderr=True)
    console.print(f"[bold]amygdala demo[/bold]: extract -> train -> eval into {output_dir} (model: {model})")
    demo = DemoOptions(output_dir=output_dir, model=model, graph=graph, device=device, dtype=dtype,
                       train=TrainOptions(target_layers=layers, progress=not no_progress))
    with console.status("running extract, train and eval (the first run converts the model once, ~1 min)"):
        result = run_demo(demo)
    record = result.artifact.record
    assert record is not None  # train always records how it trained
    typer.echo(f"concepts ({len(result.artifact.concepts)}): {terminal_line(', '.join(result.artifact.concepts))}")
    typer.echo(f"layers: {list(result.artifact.layers)}  pooling: {record.pooling.pooling}  method: {record.method}  "
               f"unique texts: {record.n_unique_texts}  device: {result.device} ({record.forward_dtype})")
    typer.echo("time: " + ", ".join(f"{stage} {value:.1f} s" for stage, value in result.seconds.items()))
    typer.echo(f"vectors:  {result.vectors_path}\nmanifest: {result.manifest_path}")
    Console().print(summary_table(result.evaluation))
    summary = result.evaluation.summary()
    typer.echo(f"eval: mean held-out AUROC {summary['mean_auroc']:.3f} (random {summary['random_mean_auroc']:.3f}), "
               f"min {summary['min_auroc']:.3f}, top-1 {summary['top1']:.3f}")
    typer.echo(f"report: {result.report_paths[1]}")
