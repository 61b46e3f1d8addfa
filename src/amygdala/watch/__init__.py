"""``amygdala watch``: see, token by token, which concepts a served model is processing.

A live server (``amygdala serve``, or vLLM with amygdala-vllm) or a recorded session is turned into events
(``events``: the manifest, turns, tokens with their readouts, notices), folded into what the screen shows
(``state``: a ring buffer, the selected layer, z-scores by the manifest's calibration or running statistics),
drawn with rich (``view``, ``terminal``), and optionally kept as JSONL (``record``). Imports no torch.

    from amygdala.watch import LiveOptions, WatchOptions, run_watch
    run_watch(WatchOptions(live=LiveOptions("http://127.0.0.1:8000"), prompt="Today I feel", once=True))
"""

from __future__ import annotations

from amygdala.watch.events import Manifest, Notice, Token, TurnEnd, TurnStart, WatchError
from amygdala.watch.run import run_watch
from amygdala.watch.session import WatchOptions, WatchOutcome
from amygdala.watch.state import ViewOptions, WatchState
from amygdala.watch.stream import LiveOptions, LiveSource

__all__ = ["LiveOptions", "LiveSource", "Manifest", "Notice", "Token", "TurnEnd", "TurnStart", "ViewOptions",
           "WatchError", "WatchOptions", "WatchOutcome", "WatchState", "run_watch"]
