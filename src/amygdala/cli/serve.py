"""``amygdala serve``: the OpenAI-compatible server with per-token readouts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from amygdala.cli.app import app
from amygdala.cli.readout import _READOUT_MANIFEST, _READOUT_MODEL, _STEER, _STEER_LAYER, _readout_options


@app.command("serve")
def serve_command(
    vectors: Optional[Path] = typer.Option(None, "--vectors", help="readout.safetensors; without it the server generates but reads nothing out."),
    manifest: Optional[Path] = _READOUT_MANIFEST,
    model: str = _READOUT_MODEL,
    dtype: str = typer.Option("float32", "--dtype", help="Forward precision: float32, bf16 or fp16."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, mps..."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback by default)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="AMYGDALA_API_KEY", help="Require 'Authorization: Bearer <key>' (env AMYGDALA_API_KEY)."),
    served_model_name: Optional[str] = typer.Option(None, "--served-model-name", help="Model id in /v1/models and responses (default: --model)."),
    steer: Optional[list[str]] = _STEER,
    steer_layer: Optional[list[int]] = _STEER_LAYER,
    max_tokens: int = typer.Option(512, "--max-tokens", help="Largest max_tokens a request may ask for."),
    max_prompt_tokens: int = typer.Option(2048, "--max-prompt-tokens", help="Longest prompt accepted, in tokens."),
    max_choices: int = typer.Option(4, "--max-choices", help="Most choices (n x prompts) per request."),
) -> None:
    """OpenAI-compatible server (/v1/completions, /v1/chat/completions) streaming per-token readouts."""
    from amygdala.artifact import load_artifact
    from amygdala.models import load_model
    from amygdala.readout import check_options
    from amygdala.serve import Engine, ServeOptions, create_app, serve_forever
    from amygdala.serve.run import check_address

    check_address(host, port)  # before loading anything: a busy port is a one-line error, not uvicorn's log
    readout = _readout_options(False, steer, steer_layer)
    if readout.steer and vectors is None:
        raise typer.BadParameter("steering needs --vectors", param_hint="--steer")
    if min(max_tokens, max_prompt_tokens, max_choices) < 1:
        raise typer.BadParameter("--max-tokens, --max-prompt-tokens and --max-choices must be at least 1")
    if api_key is None:  # click treats an empty environment variable as unset; an empty key is still a mistake
        api_key = os.environ.get("AMYGDALA_API_KEY")
    if api_key is not None and not api_key.strip():
        # An empty key (e.g. AMYGDALA_API_KEY="") must not silently leave the server open.
        raise typer.BadParameter("the API key is empty: give a non-empty key or unset AMYGDALA_API_KEY",
                                 param_hint="--api-key")
    artifact = load_artifact(vectors, manifest) if vectors is not None else None
    if artifact is not None:
        check_options(artifact, readout)
    options = ServeOptions(model_name=served_model_name or model, api_key=api_key,
                           max_prompt_tokens=max_prompt_tokens, max_tokens=max_tokens,
                           default_max_tokens=min(16, max_tokens), max_choices=max_choices,
                           steer=readout.steer, steer_layers=readout.steer_layers)
    loaded = load_model(model, dtype=dtype, device=device)
    engine = Engine(loaded, artifact)
    typer.echo(f"serving {loaded.model_id} as {options.model_name!r} on http://{host}:{port}/v1 "
               + (f"with {len(artifact.concepts)} concepts x layers {list(artifact.layers)}" if artifact
                  else "without vectors (no readout)"), err=True)
    serve_forever(create_app(engine, options), host=host, port=port, open_access=options.api_key is None)
