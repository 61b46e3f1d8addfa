"""The typer apps every stage module registers its commands on, and the table of known (one-line) errors."""

from __future__ import annotations

import logging

import typer


app = typer.Typer(add_completion=False, no_args_is_help=True, help="Emotion readout vectors for language models.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks (speed, memory) printing one JSON line.")
export_app = typer.Typer(no_args_is_help=True, help="Export an artifact to other runtimes.")
app.add_typer(bench_app, name="bench")
app.add_typer(export_app, name="export")

_state = {"debug": False}


def _known_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that are a caller's mistake: shown as one line, never a traceback (unless --debug)."""
    from amygdala.examples import ExamplesError
    from amygdala.models import ModelLoadError
    from amygdala.sources import SourceError

    errors: list[type[BaseException]] = [ExamplesError, ModelLoadError, SourceError, FileNotFoundError,
                                         PermissionError, IsADirectoryError, ValueError, OSError]
    return tuple(errors)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
          verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details.")) -> None:
    _state["debug"] = debug
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
