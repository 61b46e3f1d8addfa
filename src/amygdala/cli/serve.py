"""``amygdala serve``: the OpenAI-compatible server with per-token readouts."""

from __future__ import annotations

from pathlib import Path

import typer

from amygdala.cli import options
from amygdala.cli.app import app


@app.command("serve")
def serve_command(
    vectors: Path | None = typer.Option(None, "--vectors", help="readout.safetensors; without it the server generates but reads nothing out."),
    manifest: Path | None = options.MANIFEST,
    model: str = options.MODEL,
    dtype: str | None = options.FORWARD_DTYPE,
    device: str | None = options.DEVICE,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback by default; another needs --api-key)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    api_key: str | None = typer.Option(None, "--api-key", envvar="AMYGDALA_API_KEY", help="Require 'Authorization: Bearer <key>' (env AMYGDALA_API_KEY)."),
    served_model_name: str | None = typer.Option(None, "--served-model-name", help="Model id in /v1/models and responses (default: --model)."),
    steer: list[str] | None = options.STEER,
    steer_layer: list[int] | None = options.STEER_LAYER,
    max_tokens: int = typer.Option(512, "--max-tokens", help="Largest max_tokens a request may ask for."),
    max_prompt_tokens: int = typer.Option(2048, "--max-prompt-tokens", help="Longest prompt accepted, in tokens."),
    max_choices: int = typer.Option(4, "--max-choices", help="Most choices (n x prompts) per request."),
    ui: bool = typer.Option(False, "--ui", help="Serve the live page at /ui (behind --api-key when one is set)."),
    max_queue: int = typer.Option(256, "--max-queue", help="Most generation jobs (choices) waiting; beyond it a request gets 429 with Retry-After."),
) -> None:
    """OpenAI-compatible server (/v1/completions, /v1/chat/completions) streaming per-token readouts."""
    from amygdala.serve import ServeOptions
    from amygdala.serve.run import check_address, check_serve_access, serve_model
    from amygdala.web.auth import requested_key

    check_address(host, port)  # before anything else: a busy port is the first thing to hear about
    api_key = requested_key(api_key)
    check_serve_access(host, api_key)  # an empty key, or no key off loopback: refused, as on memory-serve
    readout = options.readout_options(False, steer, steer_layer)
    if readout.steer and vectors is None:
        raise typer.BadParameter("steering needs --vectors", param_hint="--steer")
    if min(max_tokens, max_prompt_tokens, max_choices, max_queue) < 1:
        raise typer.BadParameter("--max-tokens, --max-prompt-tokens, --max-choices and --max-queue must be at least 1")
    serve_options = ServeOptions(model_name=served_model_name or model, api_key=api_key,
                                 max_prompt_tokens=max_prompt_tokens, max_tokens=max_tokens,
                                 default_max_tokens=min(16, max_tokens), max_choices=max_choices,
                                 steer=readout.steer, steer_layers=readout.steer_layers, ui=ui,
                                 max_queued_jobs=max_queue)
    serve_model(model, vectors, serve_options, manifest=manifest, dtype=dtype, device=device, host=host, port=port,
                announce=lambda line: typer.echo(line, err=True))
