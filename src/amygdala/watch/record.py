"""``--record`` and ``--replay``: a session as JSONL, one line per turn, in ``amygdala readout --per-token``'s format.

Each line: ``{"id", "layers", "concepts", "zscore", "tokens", "token_ids", "readout": [token][layer][concept]}``
(the values as the server sent them; ``zscore`` true when it z-scored them), plus what a replay needs to draw
the same screen: ``prompt``, ``kind`` (chat, completion), ``elapsed_s`` (each token's arrival, seconds after
the turn's request), ``finish_reason``, ``source`` and the manifest's ``calibration`` when it had one. A token
that came without a readout has ``null`` there, and an unknown id is ``null``. The file is rewritten atomically
at the end of every turn, so it always holds whole turns. ``--replay`` also reads ``readout --per-token`` output.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amygdala.errors import listed
from amygdala.outputs.atomic import atomic_write_bytes
from amygdala.readout.scale import calibration_to_json
from amygdala.watch.events import (
    Event,
    Manifest,
    Notice,
    Token,
    TurnEnd,
    TurnKind,
    TurnStart,
    WatchError,
    manifest_from_json,
    readout_from_json,
)


@dataclass
class _Turn:
    start: TurnStart
    tokens: list[Token] = field(default_factory=list)
    finish_reason: str | None = None


class Recorder:
    """Collects the events of a session and keeps ``path`` holding its finished turns."""

    def __init__(self, path: Path, source: str) -> None:
        self.path, self.source = path, source
        self.manifest: Manifest | None = None
        self.turns: list[_Turn] = []

    def apply(self, event: Event) -> Notice | None:
        """Take one event; a notice when the file could not be written."""
        if isinstance(event, Manifest):
            self.manifest = event
        elif isinstance(event, TurnStart):
            if event.restart and self.turns and self.turns[-1].start.turn == event.turn:
                self.turns.pop()  # a retried turn starts over
            self.turns.append(_Turn(event))
        elif isinstance(event, Token) and self.turns:
            self.turns[-1].tokens.append(event)
        elif isinstance(event, TurnEnd) and self.turns:
            self.turns[-1].finish_reason = event.finish_reason
            return self.write()
        return None

    def write(self) -> Notice | None:
        lines = [json.dumps(self._line(turn), ensure_ascii=False) + "\n" for turn in self.turns if turn.tokens]
        try:
            atomic_write_bytes(self.path, "".join(lines).encode())
        except OSError as exc:
            return Notice(f"--record: {exc}", "error")
        return None

    def _line(self, turn: _Turn) -> dict[str, Any]:
        manifest = self.manifest
        line: dict[str, Any] = {
            "id": turn.start.turn, "layers": list(manifest.layers) if manifest else [],
            "concepts": list(manifest.concepts) if manifest else [], "zscore": bool(manifest and manifest.zscored),
            "tokens": [t.text for t in turn.tokens], "token_ids": [t.token_id for t in turn.tokens],
            "readout": [[list(row) for row in t.readout] if t.readout is not None else None for t in turn.tokens],
            "prompt": turn.start.prompt, "kind": turn.start.kind, "finish_reason": turn.finish_reason,
            "elapsed_s": [None if t.time is None else round(t.time - turn.start.time, 6) for t in turn.tokens],
            "source": self.source}
        if manifest is not None and manifest.calibration is not None:
            line["calibration"] = calibration_to_json(manifest.calibration)
        return line


def _line_problem(row: object, manifest: Manifest | None) -> str | None:
    if not isinstance(row, dict):
        return "not a JSON object"
    tokens, readout = row.get("tokens"), row.get("readout")
    if not (isinstance(tokens, list) and all(isinstance(t, str) for t in tokens)):
        return "no 'tokens' list: a per-token record (amygdala watch --record, or amygdala readout --per-token)"
    if not isinstance(readout, list) or len(readout) != len(tokens):
        return "'readout' is not one entry per token (a pooled readout? write it with --per-token)"
    for key in ("token_ids", "elapsed_s"):
        if row.get(key) is not None and not (isinstance(row[key], list) and len(row[key]) == len(tokens)):
            return f"'{key}' is not one entry per token"
    if manifest is not None and any(r is not None and readout_from_json(r, manifest) is None for r in readout):
        return f"a readout is not [{len(manifest.layers)}][{len(manifest.concepts)}] numbers"
    return None


def _manifest_of(row: dict[str, Any], where: str) -> Manifest | None:
    if not row.get("concepts") and not row.get("layers"):
        return None  # recorded from a server without readout
    return manifest_from_json(row, where)


def read_record(path: Path) -> list[dict[str, Any]]:
    """The record's lines, checked: every problem is collected, then one WatchError names the lines."""
    problems, rows = [], []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise WatchError(f"--replay {path} is not UTF-8 text") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            problem = _line_problem(row, _manifest_of(row, f"{path}:{number}") if isinstance(row, dict) else None)
        except (json.JSONDecodeError, RecursionError):
            problem = "not JSON"
        except WatchError as exc:
            problem = str(exc).split(": ", 1)[-1]
        if problem:
            problems.append(f"line {number}: {problem}")
        else:
            rows.append(row)
    if problems:
        raise WatchError(f"--replay {path}: {listed(problems)}")
    if not rows:
        raise WatchError(f"--replay {path} holds no turns: record one with amygdala watch --record")
    return rows


def replay_events(rows: list[dict[str, Any]], source: str) -> Iterator[Event]:
    """The events of a recorded session, with the recorded timing (turn k starts k seconds after turn k-1 ends)."""
    manifest: Manifest | None = None
    clock = 0.0
    for number, row in enumerate(rows, start=1):
        row_manifest = _manifest_of(row, source)
        if row_manifest is not None and row_manifest != manifest:
            manifest = row_manifest
            yield manifest
        turn = number  # ids may repeat or be strings (readout --per-token); only the grouping matters
        kind: TurnKind = "chat" if row.get("kind") == "chat" else "completion" if row.get("kind") == "completion" \
            else "text"
        prompt = str(row.get("prompt", row.get("id", turn)))
        yield TurnStart(turn, prompt, kind, clock)
        ids, elapsed = row.get("token_ids") or [None] * len(row["tokens"]), row.get("elapsed_s")
        for k, text in enumerate(row["tokens"]):
            values = row["readout"][k]
            yield Token(turn, text, ids[k] if isinstance(ids[k], int) else None,
                        None if values is None or manifest is None else readout_from_json(values, manifest),
                        None if elapsed is None or elapsed[k] is None else clock + float(elapsed[k]))
        end = clock + max((float(e) for e in elapsed or [] if e is not None), default=0.0)
        yield TurnEnd(turn, row.get("finish_reason") if isinstance(row.get("finish_reason"), str) else None, end)
        clock = end + 1.0
