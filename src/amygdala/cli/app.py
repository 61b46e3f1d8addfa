"""The typer apps every command module registers on, and the root options (``--debug``, ``--verbose``).

A new command is one module under ``cli/`` that imports ``app`` (or ``bench_app`` / ``export_app``), decorates a
function with ``@app.command(...)``, and is imported by ``cli/__init__.py``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Emotion readout vectors for language models.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks (speed, memory) printing one JSON line.")
export_app = typer.Typer(no_args_is_help=True, help="Export an artifact to other runtimes.")
app.add_typer(bench_app, name="bench")
app.add_typer(export_app, name="export")


@dataclass
class CliState:
    """One invocation's root options; ``main`` passes it in as the typer context object (``ctx.obj``)."""

    debug: bool = False


@app.callback()
def _root(ctx: typer.Context,
          debug: bool = typer.Option(False, "--debug", help="Show the traceback of any error."),
          verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details.")) -> None:
    ctx.ensure_object(CliState).debug = debug
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
