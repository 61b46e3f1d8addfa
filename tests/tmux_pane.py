"""A real terminal for the watch tests: a detached tmux session of a fixed size, driven with send-keys and read with
capture-pane. Without tmux the tests skip locally and fail when ``CI`` is set (scripts/test.sh installs it)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def require_tmux() -> str:
    tmux = shutil.which("tmux")
    if tmux is None:
        if os.environ.get("CI"):
            pytest.fail("tmux is required in CI (scripts/test.sh installs it)")
        pytest.skip("tmux is not installed (apt-get install tmux)")
    return tmux


def artifact_dir() -> Path:
    """Where tests keep screenshots and captures (``AMYGDALA_TEST_ARTIFACTS``, default ``test-artifacts/``)."""
    folder = Path(os.environ.get("AMYGDALA_TEST_ARTIFACTS", REPO_ROOT / "test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Pane:
    """One tmux session with one pane; ``env`` is exported into it (PYTHONPATH, thread limits...)."""

    def __init__(self, tmux: str, width: int, height: int) -> None:
        self.tmux, self.width, self.height = tmux, width, height
        self.name = f"amygdala-test-{uuid.uuid4().hex[:8]}"
        # A private server socket: the tests never touch the user's tmux sessions.
        self.socket = f"amygdala-test-{os.getpid()}"

    def _run(self, *args: str) -> str:
        done = subprocess.run([self.tmux, "-L", self.socket, *args], capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def _in_clean_env(self, command: str) -> str:
        """``command`` in a fixed environment: a colour terminal, UTF-8, and the test's PYTHONPATH and limits."""
        env = {key: os.environ[key] for key in ("PATH", "PYTHONPATH", "HOME", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                  "TOKENIZERS_PARALLELISM") if key in os.environ}
        exports = " ".join(f"{key}={shlex.quote(value)}" for key, value in env.items())
        return f"env -i TERM=xterm-256color COLORTERM=truecolor LANG=C.UTF-8 {exports} {command}"

    def start(self, command: str, *, keep_dead: bool = False) -> None:
        """A new session running ``command``; ``keep_dead``: its screen stays readable after it exits."""
        self._run("new-session", "-d", "-s", self.name, "-x", str(self.width), "-y", str(self.height),
                  self._in_clean_env(command))
        if keep_dead:
            self._run("set-option", "-t", self.name, "remain-on-exit", "on")

    def respawn(self, command: str) -> None:
        """Run ``command`` in the (dead) pane again."""
        self._run("respawn-pane", "-k", "-t", self.name, self._in_clean_env(command))

    def keys(self, *keys: str, literal: bool = False) -> None:
        self._run("send-keys", "-t", self.name, *(["-l"] if literal else []), *keys)

    def screen(self, *, colours: bool = False, history: bool = False) -> str:
        """What the pane shows (``history``: with the lines scrolled off its top)."""
        return self._run("capture-pane", "-p", "-t", self.name, *(["-e"] if colours else []),
                         *(["-S", "-"] if history else []))

    def coloured_line(self, number: int) -> str:
        """Line ``number`` of ``screen(history=True)`` with its colours, captured on its own: tmux writes a line's
        escapes relative to the line above, so two equal lines under different lines would read differently."""
        line = number - int(self.value("history_size"))
        return self._run("capture-pane", "-p", "-e", "-t", self.name, "-S", str(line), "-E", str(line)).rstrip("\n")

    def value(self, name: str) -> str:
        """A tmux format variable of the pane, e.g. ``alternate_on``, ``cursor_flag``, ``pane_dead``."""
        return self._run("display-message", "-p", "-t", self.name, f"#{{{name}}}").strip()

    def wait_for(self, condition: Callable[[str], bool], what: str, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if condition(screen):
                return screen
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; the screen:\n{self.screen()}")

    def kill(self) -> None:
        subprocess.run([self.tmux, "-L", self.socket, "kill-session", "-t", self.name], capture_output=True,
                       timeout=30)


@contextmanager
def tmux_pane(width: int = 110, height: int = 32) -> Iterator[Pane]:
    pane = Pane(require_tmux(), width, height)
    try:
        yield pane
    finally:
        pane.kill()
