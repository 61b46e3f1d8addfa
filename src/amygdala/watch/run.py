"""``run_watch``, the one call the CLI makes: a session to its end, drawn once or on the full-screen terminal."""

from __future__ import annotations

import sys

from rich.console import Console

from amygdala.watch.events import WatchError
from amygdala.watch.session import Session, WatchOptions, WatchOutcome, check_options
from amygdala.watch.terminal import run_terminal
from amygdala.watch.view import render


def run_once(session: Session, console: Console) -> None:
    """Every event in this thread, then the final screen, left on the terminal."""
    for event in session.opening():
        session.apply(event)
    height = console.size.height - 1 if console.is_terminal else console.size.height
    console.print(render(session.state, session.controls(), console, console.size.width, height))


def run_watch(options: WatchOptions, console: Console | None = None) -> WatchOutcome:
    """Run one session to its end (``once``), or until the person quits; Ctrl-C ends it too, with the terminal
    restored. A bad option or replay file raises WatchError before anything is drawn."""
    check_options(options)
    if options.interactive and not options.once and not sys.stdin.isatty():
        raise WatchError("interactive mode needs a terminal on stdin: give --prompt (and --once for scripts)")
    session = Session(options)
    console = console or Console()
    interrupted = False
    try:
        if options.once:
            run_once(session, console)
        else:
            run_terminal(session, console)
    except KeyboardInterrupt:
        interrupted = True
    outcome = session.close()
    return WatchOutcome(outcome.tokens, outcome.turns, outcome.errors, interrupted, outcome.record)

