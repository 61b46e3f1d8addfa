"""What the watch view shows, built from events: a ring buffer of tokens, the selected layer, z-scores.

Z-scores (``readout.scale.zscore``, per layer and concept) use the manifest's calibration when the server sends
one, else running statistics of every readout seen in this session (``readout.scale.RunningStats``); values the
server already z-scored are shown as they come. ``z_source`` says which is in use. Pure Python: no torch.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from amygdala.readout.scale import RunningStats, colour_strength, strength_reference, zscores
from amygdala.watch.events import Event, Manifest, Notice, Token, TurnEnd, TurnKind, TurnStart


@dataclass(frozen=True)
class ViewOptions:
    """What the view shows first; keys change the layer, z-score or raw, and pause while it runs."""

    #: Layer shown first; None: the deepest hooked layer.
    layer: int | None = None
    #: Start with z-scores (False: raw projections).
    zscore: bool = True
    #: Concepts in the side panel: the top K by mean |value| over the last ``window`` tokens.
    top_k: int = 8
    #: Tokens each sparkline (and the ranking) covers.
    window: int = 32
    #: Tokens kept on screen (the ring buffer).
    buffer: int = 200


@dataclass(frozen=True)
class ConceptTrace:
    """One row of the side panel: a concept's values over the window (None: a token without readout)."""

    concept: int
    name: str
    values: tuple[float | None, ...]
    score: float


class WatchState:
    """The session as the view sees it; ``apply`` each event, in order."""

    def __init__(self, options: ViewOptions | None = None) -> None:
        self.options = options or ViewOptions()
        self.manifest: Manifest | None = None
        self.stats: RunningStats | None = None
        self.tokens: deque[Token] = deque(maxlen=self.options.buffer)
        self.prompts: dict[int, tuple[str, TurnKind]] = {}
        self.notices: list[Notice] = []
        self.position = 0
        self.zscore = self.options.zscore
        self.seen = 0
        self.streaming = False
        self.finish_reason: str | None = None

    def apply(self, event: Event) -> None:
        if isinstance(event, Manifest):
            self._set_manifest(event)
        elif isinstance(event, TurnStart):
            if event.restart:
                self.tokens = deque((t for t in self.tokens if t.turn != event.turn), maxlen=self.options.buffer)
            self.prompts[event.turn] = (event.prompt, event.kind)
            self.streaming, self.finish_reason = True, None
        elif isinstance(event, Token):
            self.tokens.append(event)
            self.seen += 1
            if event.readout is not None and self.stats is not None:
                self.stats.add(event.readout)
        elif isinstance(event, TurnEnd):
            self.streaming, self.finish_reason = False, event.finish_reason
        else:
            self.notices.append(event)

    def _set_manifest(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.stats = RunningStats(len(manifest.layers), len(manifest.concepts))
        self.position = manifest.layers.index(max(manifest.layers))
        wanted = self.options.layer
        if wanted is not None and wanted in manifest.layers:
            self.position = manifest.layers.index(wanted)
        elif wanted is not None:
            self.notices.append(Notice(f"layer {wanted} is not hooked (layers {list(manifest.layers)}): showing "
                                       f"layer {self.layer}", "warning"))

    @property
    def layer(self) -> int | None:
        return self.manifest.layers[self.position] if self.manifest else None

    @property
    def errors(self) -> list[str]:
        return [notice.text for notice in self.notices if notice.level == "error"]

    def step_layer(self, step: int) -> None:
        if self.manifest:
            self.position = (self.position + step) % len(self.manifest.layers)

    def toggle_zscore(self) -> None:
        if self.manifest is not None and self.manifest.zscored:
            self.notices.append(Notice("the server sends z-scores (AMYGDALA_VLLM_ZSCORE=1): raw values are not "
                                       "available", "warning"))
            return
        self.zscore = not self.zscore

    def z_source(self) -> str:
        """Which values are shown, and where their z-scores come from."""
        if self.manifest is None:
            return "no readout"
        if self.manifest.zscored:
            return "z-scores from the server"
        if not self.zscore:
            return "raw values"
        if self.manifest.calibration is not None:
            return "z-scores: manifest calibration"
        return f"z-scores: running stats ({self.stats.count if self.stats else 0} tokens)"

    def values(self, token: Token) -> list[float] | None:
        """The token's readout at the selected layer, as shown (z-scored or raw); None without a readout."""
        if token.readout is None or self.manifest is None:
            return None
        row = token.readout[self.position]
        if self.manifest.zscored or not self.zscore:
            return list(row)
        calibration = self.manifest.calibration
        if calibration is None:
            assert self.stats is not None
            return zscores(row, self.stats.record(self.position))
        return zscores(row, calibration[self.manifest.layers[self.position]])

    def tops(self) -> list[tuple[int, float] | None]:
        """Per buffered token: its top concept at the selected layer and its colour strength in 0..1
        (``readout.scale``: against ``Z_FULL`` for z-scores, else against a quantile of the buffer's top values);
        None for a token without readout."""
        tops = []
        for token in self.tokens:
            values = self.values(token)
            tops.append(None if values is None else max(enumerate(values), key=lambda pair: pair[1]))
        zscored = self.zscore or bool(self.manifest and self.manifest.zscored)
        reference = strength_reference((top[1] for top in tops if top is not None), zscored)
        return [None if top is None else (top[0], colour_strength(top[1], reference)) for top in tops]

    def ranked(self) -> list[ConceptTrace]:
        """The top K concepts by mean |value| over the last ``window`` tokens with a readout, strongest first."""
        if self.manifest is None:
            return []
        window = [self.values(token) for token in list(self.tokens)[-self.options.window:]]
        present = [values for values in window if values is not None]
        traces = []
        for c, name in enumerate(self.manifest.concepts):
            score = sum(abs(values[c]) for values in present) / len(present) if present else 0.0
            traces.append(ConceptTrace(c, name, tuple(None if v is None else v[c] for v in window), score))
        traces.sort(key=lambda trace: -trace.score)
        return traces[:self.options.top_k]

    def rate(self) -> float | None:
        """Tokens per second of the latest turn on screen (from its tokens' arrival times)."""
        if not self.tokens:
            return None
        turn = self.tokens[-1].turn
        times = [t.time for t in self.tokens if t.turn == turn and t.time is not None]
        if len(times) < 2 or times[-1] <= times[0]:
            return None
        return (len(times) - 1) / (times[-1] - times[0])

