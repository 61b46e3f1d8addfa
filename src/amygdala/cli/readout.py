"""``amygdala readout`` and ``bench readout``: per-token readouts of texts, offline."""

from __future__ import annotations

from pathlib import Path

import typer

from amygdala.cli import options
from amygdala.cli.app import app, bench_app


@app.command("readout")
def readout_command(
    vectors: Path = typer.Option(..., "--vectors", help="readout.safetensors (its readout.json manifest beside it)."),
    manifest: Path | None = options.MANIFEST,
    model: str = options.MODEL,
    dtype: str | None = options.FORWARD_DTYPE,
    device: str | None = options.DEVICE,
    input_path: str = typer.Option(..., "--input", help="Texts: JSONL lines {\"id\"?, \"text\"} or plain lines; - reads stdin."),
    output: Path = typer.Option(..., "--output", help="JSONL, one line per input text (written atomically)."),
    per_token: bool = typer.Option(False, "--per-token", help="Write every token's readout, not one pooled readout."),
    zscore: bool = typer.Option(False, "--zscore", help="Z-score with the manifest calibration."),
    combine_layers: str | None = typer.Option(None, "--combine-layers", help="mean: one readout per concept, the average of the layers' z-scores (needs --zscore); default: one per layer."),
    pooling: str | None = typer.Option(None, "--pooling", help="last, mean or mean_last (default: as trained, from the manifest)."),
    skip_tokens: int | None = typer.Option(None, "--skip-tokens", help="With mean or mean_last pooling: leave out each text's first K tokens (default: as trained)."),
    chat_template: bool | None = typer.Option(None, "--chat-template/--no-chat-template", help="Wrap each text as a chat user turn (default: as trained)."),
    html_path: Path | None = typer.Option(None, "--html", help="Also write a page colouring tokens by top concept."),
    view: bool = typer.Option(False, "--view", help="Print the tokens coloured by top concept."),
    steer: list[str] | None = options.STEER,
    steer_layer: list[int] | None = options.STEER_LAYER,
    no_progress: bool = options.NO_PROGRESS,
) -> None:
    """Read concepts out of texts: one JSON line per text, pooled or per token."""
    from amygdala.pipeline import read_out_files

    rule = options.parse_pooling(pooling)
    combine = options.parse_combine_layers(combine_layers, zscore=zscore)
    run = read_out_files(vectors, input_path, output, options.readout_options(zscore, steer, steer_layer), manifest=manifest,
                         model=model, dtype=dtype, device=device, pooling=rule, skip_tokens=skip_tokens,
                         chat_template=chat_template, per_token=per_token, html=html_path, progress=not no_progress,
                         combine=combine)
    if view:
        from rich.console import Console

        from amygdala.readout.view import terminal_view

        for item, readout in zip(run.items, run.readouts, strict=True):
            Console().print(terminal_view(item, readout, run.artifact, zscore=zscore))
    tokens = sum(len(readout.token_ids) for readout in run.readouts)
    shape = ("per token" if per_token else f"{run.spec.pooling} pooling") + (
        f", layers combined ({combine})" if combine else "")
    typer.echo(f"read out {len(run.items)} texts ({tokens} tokens) x {len(run.artifact.concepts)} concepts x "
               f"{len(run.artifact.layers)} layers {list(run.artifact.layers)}, {shape}{', z-scored' if zscore else ''} "
               f"-> {output}" + (f", {html_path}" if html_path else "") + f" (on {run.device})")


@bench_app.command("readout", context_settings=options.PASS_THROUGH)
def bench_readout_command(
    context: typer.Context,
    quick: bool = typer.Option(False, "--quick", help="Fewer tokens: a smoke run, not the reported figures."),
    model: str = typer.Option("default", "--model", help="Model to serve ('default', 'smollm2', ...)."),
) -> None:
    """Per-token decode latency of the server with readout on vs off (other arguments go to
    amygdala.bench.readout: `amygdala bench readout -- --help` lists them); the last line is one JSON object."""
    options.run_benchmark("readout", [*(["--quick"] if quick else []), "--model", model, *context.args])
