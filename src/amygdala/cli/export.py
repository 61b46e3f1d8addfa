"""``amygdala export gguf``: a concept as a llama.cpp control vector."""

from __future__ import annotations

from pathlib import Path

import typer

from amygdala.cli.app import export_app


@export_app.command("gguf")
def export_gguf_command(
    vectors: Path = typer.Option(..., "--vectors", help="readout.safetensors written by `amygdala train`."),
    concept: str = typer.Option(..., "--concept", help="The concept whose directions become the control vector."),
    output: Path = typer.Option(..., "--output", help="The control vector .gguf to write (atomically)."),
    scale: float = typer.Option(1.0, "--scale", help="Multiply each unit direction by S (negative steers away)."),
    manifest: Path | None = typer.Option(None, "--manifest", help="readout.json (default: beside --vectors)."),
) -> None:
    """Write one concept as a llama.cpp / repeng control vector (GGUF, `direction.<layer>` per layer)."""
    from amygdala.readout.export import export_control_vector

    result = export_control_vector(vectors, concept=concept, output=output, scale=scale, manifest=manifest)
    typer.echo(f"wrote {result.path}: concept {result.concept!r} x {result.scale:g}, "
               f"layers {list(result.layers)} (direction.<N> = layer_<N>), hidden size {result.hidden_size}")
    if result.skipped_layers:
        typer.echo(f"left out layer(s) {list(result.skipped_layers)}: llama.cpp cannot steer block 0", err=True)
    typer.echo(f"use: llama-cli -m MODEL.gguf --control-vector-scaled {result.path} 1.0")
