"""The CLI's one error table: amygdala's own exceptions (and file-system errors) become one line on stderr.

What the user sees:

- a known error (a row of ``ERROR_TABLE``): ``amygdala: error: <message>`` and exit code 2. Every
  ``AmygdalaError`` names the input, what is wrong and the fix; an ``OSError`` names the file.
- a usage error (bad flag or value, from typer/click): click's usage text and exit code 2.
- anything else is a bug: ``amygdala: error: unexpected <Type>: <message> (rerun with --debug for the
  traceback)`` and exit code 1.
- ``Ctrl-C``: ``amygdala: interrupted`` and exit code 130.

Under torchrun every rank reports its own errors, so each line names the rank (``[rank 1 of 2]``).

With ``--debug`` known and unexpected errors propagate, so Python prints the full traceback.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

import click
import typer

from amygdala.errors import AmygdalaError
from amygdala.forward.launcher import world_or_single
from amygdala.outputs.sanitise import terminal_line

KNOWN_ERROR_EXIT = 2
UNEXPECTED_ERROR_EXIT = 1
INTERRUPTED_EXIT = 130


#: Exception type -> its one-line message; the first row the exception is an instance of wins. An OSError is
#: worded by Python with the path it concerns (``[Errno 2] No such file or directory: 'x'``, or ``OutputError``'s
#: ``cannot write x: ...``).
ERROR_TABLE: tuple[tuple[type[BaseException], Callable[[BaseException], str]], ...] = (
    (AmygdalaError, str),
    (OSError, str),
)


def known_message(exc: BaseException) -> str | None:
    """The one-line message of a known error, or None for an unexpected one. Sanitised for the terminal
    (``outputs.sanitise.terminal_line``): it may quote a manifest's names or a server's answer."""
    return next((terminal_line(render(exc)) for kind, render in ERROR_TABLE if isinstance(exc, kind)), None)


def unexpected_message(exc: BaseException) -> str:
    """The one line naming a bug: its type and message (sanitised, whitespace folded), and how to see more."""
    return (f"unexpected {type(exc).__name__}: {terminal_line(' '.join(str(exc).split()))} "
            "(rerun with --debug for the traceback)")


def exit_code_of_usage(exc: BaseException) -> int | None:
    """Exit codes that typer/click decide themselves (``Exit``, usage errors, shown here); None otherwise."""
    if isinstance(exc, (click.exceptions.Exit, typer.Exit)):
        return int(exc.exit_code)
    # typer >= 0.29 vendors click: its usage errors derive from typer.TyperException, not click's.
    if isinstance(exc, (click.ClickException, typer.TyperException)) and hasattr(exc, "show"):
        exc.show()
        return int(getattr(exc, "exit_code", KNOWN_ERROR_EXIT))
    return None


def rank_prefix(environ: Mapping[str, str] = os.environ) -> str:
    """``[rank 1 of 2] `` in a process a launcher started (``launcher.world_or_single``), else empty."""
    world = world_or_single(environ)
    return f"[{world.describe()}] " if world.is_parallel else ""
