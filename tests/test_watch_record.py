"""``--record`` / ``--replay``: the record's format (that of ``amygdala readout --per-token``, plus what a replay
needs), a replay giving back the recorded events, replaying real ``readout --per-token`` output, and bad files
refused in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from amygdala.forward.models import LoadedModel
from amygdala.forward.pooling import PoolingSpec
from amygdala.readout.attach import read_text
from amygdala.readout.scale import LayerCalibration
from amygdala.readout.view import InputText, readout_record, write_jsonl
from amygdala.watch.events import Manifest, Token, TurnEnd, TurnStart, WatchError
from amygdala.watch.record import Recorder, read_record, replay_events

from readout_helpers import concept_artifact

MANIFEST = Manifest(("joy", "fear"), (2, 5), {2: LayerCalibration((0.0, 1.0), (1.0, 2.0)),
                                               5: LayerCalibration((0.5, 0.0), (3.0, 1.0))})
R1, R2 = ((1.0, 2.0), (3.0, 4.0)), ((-1.0, 0.5), (0.25, 8.0))


def _session() -> list:
    return [MANIFEST, TurnStart(1, "Hi", "chat", 10.0), Token(1, "Hel", 11, R1, 10.5), Token(1, "lo", None, None, 10.75),
            Token(1, "!", 12, R2, 11.0), TurnEnd(1, "stop", 11.0)]


def test_record_line_is_readout_per_token_format_plus_replay_fields(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "rec.jsonl", "http://server")
    for event in _session():
        assert recorder.apply(event) is None
    (line,) = [json.loads(text) for text in (tmp_path / "rec.jsonl").read_text().splitlines()]
    assert line == {"id": 1, "layers": [2, 5], "concepts": ["joy", "fear"], "zscore": False,
                    "tokens": ["Hel", "lo", "!"], "token_ids": [11, None, 12],
                    "readout": [[[1.0, 2.0], [3.0, 4.0]], None, [[-1.0, 0.5], [0.25, 8.0]]],
                    "prompt": "Hi", "kind": "chat", "finish_reason": "stop", "elapsed_s": [0.5, 0.75, 1.0],
                    "source": "http://server",
                    "calibration": {"layer_2": {"mean": [0.0, 1.0], "std": [1.0, 2.0]},
                                    "layer_5": {"mean": [0.5, 0.0], "std": [3.0, 1.0]}}}


def test_replay_gives_back_the_recorded_events(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "rec.jsonl", "http://server")
    for event in _session():
        recorder.apply(event)
    replayed = list(replay_events(read_record(tmp_path / "rec.jsonl"), "rec"))
    assert replayed[0] == MANIFEST
    assert replayed[1] == TurnStart(1, "Hi", "chat", 0.0)
    assert replayed[2:5] == [Token(1, "Hel", 11, R1, 0.5), Token(1, "lo", None, None, 0.75), Token(1, "!", 12, R2, 1.0)]
    assert replayed[5] == TurnEnd(1, "stop", 1.0)


def test_a_retried_turn_is_recorded_once_and_an_unfinished_one_on_close(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "rec.jsonl", "s")
    for event in [MANIFEST, TurnStart(1, "Hi", "completion", 0.0), Token(1, "a", 1, R1, 0.1),
                  TurnStart(1, "Hi", "completion", 1.0, restart=True), Token(1, "b", 2, R2, 1.1)]:
        recorder.apply(event)
    assert not (tmp_path / "rec.jsonl").exists(), "nothing is written before a turn ends"
    assert recorder.write() is None
    (line,) = [json.loads(text) for text in (tmp_path / "rec.jsonl").read_text().splitlines()]
    assert line["tokens"] == ["b"] and line["finish_reason"] is None


def test_an_unwritable_record_is_a_notice_not_a_crash(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    recorder = Recorder(blocker / "rec.jsonl", "s")
    notices = [recorder.apply(event) for event in _session()]
    assert notices[-1] is not None and notices[-1].level == "error" and "--record" in notices[-1].text


@pytest.mark.slow
def test_replay_reads_readout_per_token_output(gemma: LoadedModel, tmp_path: Path) -> None:
    """The offline ``amygdala readout --per-token`` record (real Gemma readouts) plays as one text per line."""
    artifact = concept_artifact(gemma)
    items = [InputText("a", "I am so happy today."), InputText(7, "The dark noises terrified me.")]
    readouts = [read_text(gemma, artifact, item.text) for item in items]
    records = [readout_record(item, readout, artifact, per_token=True, spec=PoolingSpec(), zscore=False)
               for item, readout in zip(items, readouts)]
    write_jsonl(tmp_path / "offline.jsonl", records)
    events = list(replay_events(read_record(tmp_path / "offline.jsonl"), "offline"))
    manifest = events[0]
    assert isinstance(manifest, Manifest) and manifest.concepts == artifact.concepts and manifest.calibration is None
    starts = [e for e in events if isinstance(e, TurnStart)]
    assert [(s.prompt, s.kind) for s in starts] == [("a", "text"), ("7", "text")]
    tokens = [e for e in events if isinstance(e, Token)]
    assert [t.text for t in tokens] == [tok for readout in readouts for tok in readout.tokens]
    assert [t.readout for t in tokens] == [tuple(map(tuple, row)) for r in readouts for row in r.values.tolist()]


def test_bad_record_lines_are_all_named_in_one_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    good = {"layers": [1], "concepts": ["joy"], "tokens": ["a"], "readout": [[[1.0]]]}
    path.write_text("\n".join([json.dumps(good), "not json", json.dumps({"layers": [1], "concepts": ["joy"],
                                                                        "readout": [[1.0]]}),
                               json.dumps(good | {"readout": [[[1.0, 2.0]]]}),
                               json.dumps(good | {"tokens": ["a", "b"]})]) + "\n")
    with pytest.raises(WatchError) as error:
        read_record(path)
    message = str(error.value)
    assert message.startswith(f"--replay {path}: line 2: not JSON; line 3: no 'tokens' list")
    assert "line 4: a readout is not [1][1] numbers" in message and "line 5: 'readout' is not one entry" in message


def test_cli_replay_of_a_bad_file_fails_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "pooled.jsonl"
    path.write_text(json.dumps({"id": 1, "layers": [1], "concepts": ["joy"], "readout": [[0.5]]}) + "\n")
    done = subprocess.run([sys.executable, "-m", "amygdala.cli", "watch", "--replay", str(path), "--once"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == (f"amygdala: error: --replay {path}: line 1: no 'tokens' list: a per-token record "
                                   "(amygdala watch --record, or amygdala readout --per-token)")
