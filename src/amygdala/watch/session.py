"""One ``amygdala watch`` session: a source (a live server or a recorded file) feeding the state, the recorder and
a screen (``run.run_watch`` runs one).

Events are produced on a worker thread (a stream blocks on the network; a replay sleeps to keep its timing) and
applied on the screen's thread, so keys stay responsive. ``--once`` runs everything in the calling thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

from amygdala.watch.events import Event, Notice, Token, TurnStart, WatchError
from amygdala.watch.record import Recorder, read_record, replay_events
from amygdala.watch.state import ViewOptions, WatchState
from amygdala.watch.stream import LiveOptions, LiveSource
from amygdala.watch.view import Controls

#: Longest pause a replay keeps between two recorded tokens.
MAX_REPLAY_GAP_S = 2.0


@dataclass(frozen=True)
class WatchOptions:
    """One session: where the tokens come from, what to send, and how to show and keep them."""

    #: The server to stream from; None when replaying.
    live: LiveOptions | None = None
    #: A recorded session (``--record`` or ``amygdala readout --per-token`` output) to play instead.
    replay: Path | None = None
    #: The first message (chat) or prompt (completion); None: none (interactive mode waits for one).
    prompt: str | None = None
    #: Enter writes further messages, sent to the server as new turns.
    interactive: bool = False
    #: Run the whole session, leave its final screen on the terminal and return (no keys).
    once: bool = False
    #: Keep every token with its readout in this JSONL file.
    record: Path | None = None
    view: ViewOptions = field(default_factory=ViewOptions)


@dataclass(frozen=True)
class WatchOutcome:
    tokens: int
    turns: int
    #: Every error the session showed, in order.
    errors: tuple[str, ...]
    interrupted: bool
    record: Path | None


def check_options(options: WatchOptions) -> None:
    """Refuse, before connecting or drawing anything, options that cannot work together."""
    problems = []
    if (options.live is None) == (options.replay is None):
        problems.append("give either --url (a live server) or --replay FILE")
    if options.replay is not None and (options.record or options.prompt or options.interactive):
        problems.append("--replay plays a recorded session: drop --record, --prompt and interactive mode")
    if options.replay is not None and not options.replay.is_file():
        problems.append(f"--replay {options.replay} is not a file")
    if options.once and options.live is not None and options.prompt is None:
        problems.append("--once needs --prompt (or --replay): there is nobody to type a message")
    if options.record is not None and not options.record.parent.is_dir():
        problems.append(f"--record {options.record}: folder {options.record.parent} does not exist")
    if options.live is not None and (options.live.max_tokens < 1 or not 0 <= options.live.temperature <= 2
                                     or options.live.retries < 0 or options.live.timeout <= 0):
        problems.append("--max-tokens must be >= 1, --temperature within 0..2, --retry >= 0, --timeout > 0")
    if min(options.view.top_k, options.view.window, options.view.buffer) < 1:
        problems.append("--top, --window and --buffer must be at least 1")
    if problems:
        raise WatchError("; ".join(problems))


def paced(events: Iterator[Event], stop: threading.Event, resume: threading.Event) -> Iterator[Event]:
    """A replay at its recorded pace (gaps capped at MAX_REPLAY_GAP_S; 20 tokens/s without times), holding
    while paused (``resume`` clear)."""
    last: float | None = None
    for event in events:
        if isinstance(event, Token):
            gap = 0.05 if event.time is None or last is None else min(max(event.time - last, 0.0), MAX_REPLAY_GAP_S)
            last = event.time if event.time is not None else last
            if stop.wait(gap):
                return
        elif isinstance(event, TurnStart):
            last = event.time
        while not resume.wait(0.1):
            if stop.is_set():
                return
        yield event


class Feed:
    """Runs event iterators on a worker thread, one at a time; the screen's thread drains their events."""

    def __init__(self) -> None:
        self.events: queue.Queue[Event] = queue.Queue()
        self.stop, self.resume = threading.Event(), threading.Event()
        self.resume.set()
        self._thread: threading.Thread | None = None

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, make: Callable[[], Iterator[Event]]) -> None:
        def work() -> None:
            try:
                for event in make():
                    self.events.put(event)
            except Exception as exc:  # noqa: BLE001 - shown on screen: the view must outlive a failing source
                self.events.put(Notice(f"the session stopped on an unexpected error: {exc!r}", "error"))

        self._thread = threading.Thread(target=work, name="amygdala-watch-feed", daemon=True)
        self._thread.start()

    def drain(self) -> list[Event]:
        drained = []
        while True:
            try:
                drained.append(self.events.get_nowait())
            except queue.Empty:
                return drained

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


class Session:
    """The state and the recorder, fed by one source."""

    def __init__(self, options: WatchOptions) -> None:
        self.options = options
        self.state = WatchState(options.view)
        self.source_label = options.live.url if options.live else f"replay of {options.replay}"
        self.recorder = Recorder(options.record, self.source_label) if options.record else None
        self.live = LiveSource(options.live) if options.live else None
        self.rows = read_record(options.replay) if options.replay else []

    def apply(self, event: Event) -> None:
        self.state.apply(event)
        if self.recorder is not None and (problem := self.recorder.apply(event)) is not None:
            self.state.apply(problem)

    def opening(self) -> Iterator[Event]:
        """The events before any key is pressed: the replay, or the manifest and the first turn."""
        if self.live is None:
            return replay_events(self.rows, str(self.options.replay))
        first = self.live.turn(self.options.prompt) if self.options.prompt is not None else iter(())
        return chain(self.live.connect(), first)

    def controls(self, *, paused: bool = False, typing: str | None = None) -> Controls:
        return Controls(self.source_label, paused=paused,
                        interactive=self.options.interactive and self.live is not None, typing=typing)

    def close(self) -> WatchOutcome:
        if self.live is not None:
            self.live.stop.set()
            self.live.close()
        if self.recorder is not None and (problem := self.recorder.write()) is not None:
            self.state.apply(problem)
        return WatchOutcome(self.state.seen, len(self.state.prompts), tuple(self.state.errors), False,
                            self.options.record)
