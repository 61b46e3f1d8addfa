"""``amygdala readout`` and ``bench readout``: per-token readouts of texts, offline."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from amygdala.cli.app import app, bench_app

if TYPE_CHECKING:
    from amygdala.readout import ReadoutOptions
    from amygdala.readout_view import InputText

_VECTORS = typer.Option(..., "--vectors", help="readout.safetensors (its readout.json manifest beside it).")
_READOUT_MANIFEST = typer.Option(None, "--manifest", help="Manifest path (default: <vectors>.json).")
_READOUT_MODEL = typer.Option("default", "--model", help="'default' (embedded Gemma 3 270M), 'smollm2', an HF folder or a .gguf file.")
_STEER = typer.Option(None, "--steer", help="concept=alpha (repeatable): add alpha x (mean residual norm on the prompt) x the concept's unit vector at each steered layer.")
_STEER_LAYER = typer.Option(None, "--steer-layer", help="Layer that steers (repeatable; default: every hooked layer).")


def _readout_options(zscore: bool, steer: list[str] | None, steer_layer: list[int] | None) -> ReadoutOptions:
    from amygdala.readout import ReadoutOptions, parse_steer

    return ReadoutOptions(zscore=zscore, steer=parse_steer(steer or []),
                          steer_layers=tuple(steer_layer) if steer_layer else None)


def _read_input(source: str) -> list[InputText]:
    from amygdala.readout_view import parse_input_lines

    if source == "-":
        return parse_input_lines(sys.stdin, "stdin")
    with Path(source).open(encoding="utf-8") as handle:
        return parse_input_lines(handle, source)


@app.command("readout")
def readout_command(
    vectors: Path = _VECTORS,
    manifest: Optional[Path] = _READOUT_MANIFEST,
    model: str = _READOUT_MODEL,
    dtype: str = typer.Option("float32", "--dtype", help="Forward precision: float32, bf16 or fp16."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, mps..."),
    input_path: str = typer.Option(..., "--input", help="Texts: JSONL lines {\"id\"?, \"text\"} or plain lines; - reads stdin."),
    output: Path = typer.Option(..., "--output", help="JSONL, one line per input text (written atomically)."),
    per_token: bool = typer.Option(False, "--per-token", help="Write every token's readout, not one pooled readout."),
    zscore: bool = typer.Option(False, "--zscore", help="Z-score with the manifest calibration."),
    pooling: Optional[str] = typer.Option(None, "--pooling", help="last or mean (default: as trained, from the manifest)."),
    skip_tokens: Optional[int] = typer.Option(None, "--skip-tokens", help="With mean pooling: leave out each text's first K tokens (default: as trained)."),
    chat_template: Optional[bool] = typer.Option(None, "--chat-template/--no-chat-template", help="Wrap each text as a chat user turn (default: as trained)."),
    html_path: Optional[Path] = typer.Option(None, "--html", help="Also write a page colouring tokens by top concept."),
    view: bool = typer.Option(False, "--view", help="Print the tokens coloured by top concept."),
    steer: Optional[list[str]] = _STEER,
    steer_layer: Optional[list[int]] = _STEER_LAYER,
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
) -> None:
    """Read concepts out of texts: one JSON line per text, pooled or per token."""
    from amygdala.artifact import load_artifact
    from amygdala.models import load_model
    from amygdala.readout import check_options, read_texts, trained_text_options
    from amygdala.readout_view import readout_record, terminal_view, write_html, write_jsonl

    if pooling not in (None, "last", "mean"):
        raise typer.BadParameter(f"{pooling!r} is not 'last' or 'mean'", param_hint="--pooling")
    options = _readout_options(zscore, steer, steer_layer)
    items = _read_input(input_path)
    artifact = load_artifact(vectors, manifest)
    check_options(artifact, options)
    trained = trained_text_options(artifact)
    pool, skip = pooling or trained[0], trained[1] if skip_tokens is None else skip_tokens
    template = trained[2] if chat_template is None else chat_template
    loaded = load_model(model, dtype=dtype, device=device)
    readouts = read_texts(loaded, artifact, [item.text for item in items], options, chat_template=template,
                          max_length=trained[3], progress=not no_progress)
    records = [readout_record(item, readout, artifact, per_token=per_token, pooling=pool, skip_tokens=skip,
                              zscore=zscore) for item, readout in zip(items, readouts)]
    write_jsonl(output, records)
    if html_path is not None:
        write_html(html_path, list(zip(items, readouts)), artifact, zscore=zscore)
    if view:
        from rich.console import Console

        for item, readout in zip(items, readouts):
            Console().print(terminal_view(item, readout, artifact, zscore=zscore))
    tokens = sum(len(readout.token_ids) for readout in readouts)
    shape = "per token" if per_token else f"{pool} pooling"
    typer.echo(f"read out {len(items)} texts ({tokens} tokens) x {len(artifact.concepts)} concepts x "
               f"{len(artifact.layers)} layers {list(artifact.layers)}, {shape}{', z-scored' if zscore else ''} "
               f"-> {output}" + (f", {html_path}" if html_path else ""))


@bench_app.command("readout")
def bench_readout_command(
    quick: bool = typer.Option(False, "--quick", help="Fewer tokens: a smoke run, not the reported figures."),
    model: str = typer.Option("default", "--model", help="Model to serve ('default', 'smollm2', ...)."),
) -> None:
    """Per-token decode latency of the server with readout on vs off; the last line is one JSON object."""
    import runpy

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_readout.py"
    if not script.exists():
        raise FileNotFoundError(f"{script} not found: run `amygdala bench readout` from a source checkout")
    runpy.run_path(str(script), run_name="bench_readout")["main"]((["--quick"] if quick else []) + ["--model", model])
