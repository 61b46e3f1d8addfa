"""``amygdala <stage>``: a thin shell over the library, one module per stage (``cli/<stage>.py``). Each command
parses options, calls one library function and prints a summary. Known errors become one line on stderr and exit
code 2 (``--debug`` shows the traceback)."""

from __future__ import annotations

import sys

import typer

# Importing a stage module registers its commands; the order here is the order of `amygdala --help` (data flow).
from amygdala.cli import extract, train, eval, readout, serve, export, demo  # noqa: F401, I001
from amygdala.cli.app import _known_errors, _state, app

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app, mapping known errors to one line and exit code 2."""
    try:
        # Without standalone mode, click returns the code of a raised typer.Exit instead of raising it.
        code = app(args=argv, standalone_mode=False)
    except SystemExit as exc:
        return int(exc.code or 0)
    except KeyboardInterrupt:
        print("amygdala: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the error table below decides what is known
        import click

        if isinstance(exc, (click.exceptions.Exit, typer.Exit)):
            return int(exc.exit_code)
        # typer >= 0.29 vendors click: its usage errors derive from typer.TyperException, not click's.
        if isinstance(exc, (click.ClickException, typer.TyperException)) and hasattr(exc, "show"):
            exc.show()
            return exc.exit_code
        if _state["debug"] or not isinstance(exc, _known_errors()):
            raise
        print(f"amygdala: error: {exc}", file=sys.stderr)
        return 2
    return code if isinstance(code, int) else 0

