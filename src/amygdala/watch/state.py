"""What the watch view shows, built from events: a ring buffer of tokens, the selected layer, z-scores.

Z-scores are ``(x - mean) / std`` per layer and concept, with the manifest's calibration when the server sends
one, else with running statistics of every readout seen in this session (Welford); values the server already
z-scored are shown as they come. ``z_source`` says which is in use. Pure Python: no torch.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from amygdala.watch.events import Event, Manifest, Notice, Readout, Token, TurnEnd, TurnKind, TurnStart

#: A z-score this large gives a token its full colour.
Z_FULL = 3.0


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


class RunningStats:
    """Mean and variance of every readout seen, per layer and concept (Welford's online update)."""

    def __init__(self, n_layers: int, n_concepts: int) -> None:
        self.count = 0
        self.mean = [[0.0] * n_concepts for _ in range(n_layers)]
        self.m2 = [[0.0] * n_concepts for _ in range(n_layers)]

    def add(self, readout: Readout) -> None:
        self.count += 1
        for mean, m2, row in zip(self.mean, self.m2, readout):
            for c, x in enumerate(row):
                delta = x - mean[c]
                mean[c] += delta / self.count
                m2[c] += delta * (x - mean[c])

    def zscores(self, position: int, row: tuple[float, ...]) -> list[float]:
        """``row`` z-scored at layer ``position`` (0 while fewer than two readouts were seen, or std is 0)."""
        if self.count < 2:
            return [0.0] * len(row)
        mean, m2 = self.mean[position], self.m2[position]
        stds = [math.sqrt(m2[c] / (self.count - 1)) for c in range(len(row))]
        return [(x - mean[c]) / stds[c] if stds[c] > 0 else 0.0 for c, x in enumerate(row)]


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
            return self.stats.zscores(self.position, row)
        layer = calibration[self.manifest.layers[self.position]]
        return [(x - m) / s for x, m, s in zip(row, layer.mean, layer.std)]

    def tops(self) -> list[tuple[int, float] | None]:
        """Per buffered token: its top concept at the selected layer and a strength in 0..1 (its value against
        3 for z-scores, else against the buffer's 90th-percentile top value, so one outlier does not wash out
        the rest); None for a token without readout."""
        tops = []
        for token in self.tokens:
            values = self.values(token)
            tops.append(None if values is None else max(enumerate(values), key=lambda pair: pair[1]))
        zscored = self.zscore or bool(self.manifest and self.manifest.zscored)
        reference = Z_FULL if zscored else _percentile90([top[1] for top in tops if top is not None and top[1] > 0])
        return [None if top is None else (top[0], max(0.0, min(1.0, top[1] / reference))) for top in tops]

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


def _percentile90(values: list[float]) -> float:
    if not values:
        return 1.0
    ordered = sorted(values)
    return max(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 1e-6)
