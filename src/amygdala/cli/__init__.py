"""``amygdala <stage>``: a thin shell over the library, one module per command (``cli/<stage>.py``). Each command
parses options, checks their combinations, calls one library function (``amygdala.pipeline``, ``amygdala.demo``,
...) and prints a summary. Errors are mapped to one line by ``cli/errors.py``; ``--debug`` shows the traceback."""

from __future__ import annotations

import sys

# isort: off
# Importing a command module registers its commands; the order here is the order of `amygdala --help` (data flow).
from amygdala.cli import extract, synthesize, train, eval, readout, serve, watch, export, demo  # noqa: F401
# isort: on
from amygdala.cli.app import CliState, app
from amygdala.cli.errors import (
    INTERRUPTED_EXIT,
    KNOWN_ERROR_EXIT,
    UNEXPECTED_ERROR_EXIT,
    exit_code_of_usage,
    known_message,
    rank_prefix,
    unexpected_message,
)
from amygdala.cli.versions import check_installed_versions

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app; errors become one line on stderr (see ``cli/errors.py``)."""
    state = CliState()
    try:
        check_installed_versions()  # a peer installed with its dependencies may have downgraded transformers
        # Without standalone mode, click returns the code of a raised typer.Exit instead of raising it.
        code = app(args=argv, standalone_mode=False, obj=state)
    except SystemExit as exc:
        return int(exc.code or 0)
    except KeyboardInterrupt:
        print("amygdala: interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT
    except Exception as exc:  # noqa: BLE001 - the error table decides what is known
        if (usage := exit_code_of_usage(exc)) is not None:
            return usage
        if state.debug:
            raise
        if (message := known_message(exc)) is not None:
            print(f"amygdala: error: {rank_prefix()}{message}", file=sys.stderr)
            return KNOWN_ERROR_EXIT
        print(f"amygdala: error: {rank_prefix()}{unexpected_message(exc)}", file=sys.stderr)
        return UNEXPECTED_ERROR_EXIT
    return code if isinstance(code, int) else 0
