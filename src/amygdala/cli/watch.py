"""``amygdala watch``: a live terminal view of a server's per-token readouts (or of a recorded session)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from amygdala.cli.app import app


@app.command("watch")
def watch_command(
    url: str = typer.Option("http://127.0.0.1:8000", "--url", help="Server speaking amygdala's readout contract (amygdala serve, or vLLM with amygdala-vllm)."),
    api_key: str | None = typer.Option(None, "--api-key", envvar="AMYGDALA_API_KEY", help="Sent as 'Authorization: Bearer <key>' (env AMYGDALA_API_KEY)."),
    chat: bool | None = typer.Option(None, "--chat/--completion", help="/v1/chat/completions or /v1/completions (default: chat, falling back to completions for a model without a chat template)."),
    prompt: str | None = typer.Option(None, "--prompt", help="The first message (chat) or prompt (completion); without it: interactive, type messages."),
    model: str | None = typer.Option(None, "--model", help="Model name sent with requests (default: the first in /v1/models)."),
    max_tokens: int = typer.Option(64, "--max-tokens", help="Tokens to generate per turn."),
    temperature: float = typer.Option(0.7, "--temperature", help="Sampling temperature (0: greedy)."),
    layer: int | None = typer.Option(None, "--layer", help="Layer shown first (default: the deepest hooked one)."),
    raw: bool = typer.Option(False, "--raw", help="Start with raw projections instead of z-scores."),
    top: int = typer.Option(8, "--top", help="Concepts in the side panel (top K by mean |value|)."),
    window: int = typer.Option(32, "--window", help="Tokens each sparkline covers."),
    buffer: int = typer.Option(200, "--buffer", help="Tokens kept on screen (ring buffer)."),
    record: Path | None = typer.Option(None, "--record", help="Keep every token with its readout (JSONL, amygdala readout --per-token format)."),
    replay: Path | None = typer.Option(None, "--replay", help="Play a recorded session (or readout --per-token output) instead of a server."),
    once: bool = typer.Option(False, "--once", help="Run the whole session, leave the final screen and exit (scripts, docs)."),
    retry: int = typer.Option(0, "--retry", help="Retry a lost stream (or unreachable server) this many times, with backoff."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds to wait for the server on each read."),
) -> None:
    """Watch, token by token, which concepts the model is processing: keys [ ] layer, z z-score/raw, p pause, q quit."""
    from amygdala.outputs.sanitise import terminal_line
    from amygdala.watch import LiveOptions, ViewOptions, WatchOptions, run_watch

    if api_key is None:  # click treats an empty environment variable as unset
        api_key = os.environ.get("AMYGDALA_API_KEY") or None
    live = None if replay is not None else LiveOptions(
        url=url, api_key=api_key, mode=None if chat is None else "chat" if chat else "completion", model=model,
        max_tokens=max_tokens, temperature=temperature, retries=retry, timeout=timeout)
    options = WatchOptions(live=live, replay=replay, prompt=prompt, interactive=replay is None and prompt is None,
                           once=once, record=record,
                           view=ViewOptions(layer=layer, zscore=not raw, top_k=top, window=window, buffer=buffer))
    outcome = run_watch(options)
    typer.echo(f"watched {outcome.tokens} tokens in {outcome.turns} turns"
               + (f"; recorded to {outcome.record}" if outcome.record and outcome.tokens else ""), err=True)
    if outcome.interrupted:
        raise typer.Exit(130)
    if outcome.errors and once:  # a script learns that the session it drew did not go through
        typer.echo(f"amygdala: error: {terminal_line(outcome.errors[-1])}", err=True)
        raise typer.Exit(1)
