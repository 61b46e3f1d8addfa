"""The full-screen view: rich ``Live`` on the terminal's alternate screen, keys read from stdin in cbreak mode.

Keys: ``[`` / ``]`` (or the left / right arrows) switch the layer, ``z`` toggles z-scores and raw values, ``p``
(or space) pauses, ``q`` quits; in interactive mode Enter opens a message line (Enter sends it, Esc drops it).
The terminal is restored on every way out: ``q``, the end of a non-interactive stream without a keyboard,
Ctrl-C and SIGTERM (both raise KeyboardInterrupt through the ``with`` blocks that restore it).
"""

from __future__ import annotations

import os
import re
import select
import signal
import sys
import termios
import threading
import time
import tty
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, TextIO

from rich.console import Console
from rich.live import Live

from amygdala.watch.events import Notice
from amygdala.watch.session import Feed, Session, paced
from amygdala.watch.view import render

_CSI = re.compile(r"\x1b(?:\[[0-9;?]*[A-Za-z~]|O[A-Za-z])")
_NAMED = {"\x1b[D": "left", "\x1b[C": "right", "\x1bOD": "left", "\x1bOC": "right", "\x1b": "esc", "\r": "enter",
          "\n": "enter", "\x7f": "backspace", "\x08": "backspace"}
#: Redraw at least this often (tokens/s and the clock move even when nothing arrives).
_IDLE_REDRAW_S = 0.5


def split_keys(data: str) -> list[str]:
    """Raw terminal input as key names: escape sequences whole (unknown ones dropped), then single characters."""
    keys, position = [], 0
    while position < len(data):
        match = _CSI.match(data, position)
        if match:
            if match.group() in _NAMED:
                keys.append(_NAMED[match.group()])
            position = match.end()
            continue
        keys.append(_NAMED.get(data[position], data[position]))
        position += 1
    return keys


class KeyReader:
    """stdin in cbreak mode (keys one by one, no echo; Ctrl-C still interrupts), restored on exit."""

    def __init__(self, stream: TextIO = sys.stdin) -> None:
        self.fd = stream.fileno() if stream.isatty() else None
        self._saved: list[Any] | None = None

    def __enter__(self) -> KeyReader:
        if self.fd is not None:
            self._saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None and self._saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)

    def read(self, timeout: float) -> list[str]:
        if self.fd is None:
            time.sleep(timeout)
            return []
        if not select.select([self.fd], [], [], timeout)[0]:
            return []
        return split_keys(os.read(self.fd, 1024).decode("utf-8", errors="replace"))


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the terminal is restored when the process is asked to end."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Screen:
    """What the keys change: pause, the message being typed, quitting."""

    def __init__(self, session: Session, feed: Feed) -> None:
        self.session, self.feed = session, feed
        self.paused, self.quit = False, False
        interactive = session.options.interactive and session.live is not None
        self.typing: str | None = "" if interactive and session.options.prompt is None else None

    def press(self, key: str) -> None:
        if self.typing is not None:
            self._type(key)
        elif key in ("[", "left", "]", "right"):
            self.session.state.step_layer(-1 if key in ("[", "left") else 1)
        elif key == "z":
            self.session.state.toggle_zscore()
        elif key in ("p", " "):
            self.paused = not self.paused
            (self.feed.resume.clear if self.paused else self.feed.resume.set)()
        elif key == "q":
            self.quit = True
        elif key == "enter" and self.session.options.interactive and self.session.live is not None:
            self.typing = ""

    def _type(self, key: str) -> None:
        assert self.typing is not None
        if key == "enter" and self.typing.strip():
            self._send(self.typing)
        elif key == "esc":
            self.typing = None
        elif key == "backspace":
            self.typing = self.typing[:-1]
        elif len(key) == 1 and key.isprintable():
            self.typing += key

    def _send(self, message: str) -> None:
        live = self.session.live
        if self.feed.busy or live is None:
            self.session.state.apply(Notice("wait for the answer to finish before sending another message",
                                            "warning"))
            return
        self.typing = None
        self.feed.start(lambda: live.turn(message))


def run_terminal(session: Session, console: Console) -> None:
    """Draw the session live until ``q`` (or, without a keyboard, until its stream ends)."""
    feed = Feed()
    opening = session.opening
    feed.start(opening if session.live is not None else lambda: paced(opening(), feed.stop, feed.resume))
    screen = _Screen(session, feed)
    try:
        with _sigterm_interrupts(), KeyReader() as keys, Live(console=console, screen=True, auto_refresh=False,
                                                              redirect_stdout=False, redirect_stderr=False) as live:
            _loop(session, feed, screen, keys, live, console)
    finally:
        feed.stop.set()


def _loop(session: Session, feed: Feed, screen: _Screen, keys: KeyReader, live: Live, console: Console) -> None:
    drawn = 0.0
    while True:
        pressed = keys.read(0.05)
        for key in pressed:
            screen.press(key)
        if screen.quit:
            return
        events = [] if screen.paused else feed.drain()
        for event in events:
            session.apply(event)
        if keys.fd is None and not feed.busy and feed.events.empty():
            return
        if pressed or events or time.monotonic() - drawn >= _IDLE_REDRAW_S:
            controls = session.controls(paused=screen.paused, typing=screen.typing)
            live.update(render(session.state, controls, console, console.size.width, console.size.height),
                        refresh=True)
            drawn = time.monotonic()
