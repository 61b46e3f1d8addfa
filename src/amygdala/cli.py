"""``amygdala <stage>``: a thin shell over the library. Each command parses options, calls one library
function and prints a summary. Known errors become one line on stderr and exit code 2 (``--debug`` shows the
traceback)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

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


# ---- stage commands are registered below, one section per stage ----

# [extract]

# [train]

# [eval]

# [readout]

# [serve]

# [demo]


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app, mapping known errors to one line and exit code 2."""
    try:
        app(args=argv, standalone_mode=False)
    except SystemExit as exc:
        return int(exc.code or 0)
    except KeyboardInterrupt:
        print("amygdala: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the error table below decides what is known
        import click

        if isinstance(exc, click.exceptions.Exit):
            return int(exc.exit_code)
        if isinstance(exc, click.ClickException):
            exc.show()
            return exc.exit_code
        if _state["debug"] or not isinstance(exc, _known_errors()):
            raise
        print(f"amygdala: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
