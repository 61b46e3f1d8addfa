"""The watch state and screen, fed events directly: z-scores against independent references (Python's
statistics module, the manifest formula), the layer default, the ring buffer, the ranking, and a screen that
survives hostile token text."""

from __future__ import annotations

import random
import statistics

import pytest
from rich.console import Console
from rich.text import Text

from amygdala.outputs.sanitise import terminal_text
from amygdala.readout.scale import LayerCalibration
from amygdala.watch.events import Manifest, Notice, Token, TurnEnd, TurnStart
from amygdala.watch.state import ViewOptions, WatchState
from amygdala.watch.view import Controls, render, sparkline

CONCEPTS = ("joy", "anger", "fear")
LAYERS = (3, 14, 9)


def _readouts(count: int, seed: int = 0) -> list[tuple[tuple[float, ...], ...]]:
    rng = random.Random(seed)
    return [tuple(tuple(rng.gauss(10 * layer, 1 + c) for c in range(3)) for layer in range(3)) for _ in range(count)]


def _state(manifest: Manifest, readouts: list, options: ViewOptions | None = None) -> WatchState:
    state = WatchState(options)
    state.apply(manifest)
    state.apply(TurnStart(1, "Hello", "completion", 0.0))
    for k, readout in enumerate(readouts):
        state.apply(Token(1, f" t{k}", k, readout, 0.5 * k))
    state.apply(TurnEnd(1, "length", 0.5 * len(readouts)))
    return state


def test_running_stats_zscores_equal_the_statistics_module() -> None:
    readouts = _readouts(40)
    state = _state(Manifest(CONCEPTS, LAYERS), readouts)
    assert state.z_source() == "z-scores: running stats (40 tokens)"
    position = state.position
    for c in range(3):
        column = [r[position][c] for r in readouts]
        mean, std = statistics.fmean(column), statistics.stdev(column)
        got = [state.values(token)[c] for token in state.tokens]
        assert got == pytest.approx([(x - mean) / std for x in column], rel=1e-9, abs=1e-9)


def test_calibration_zscores_follow_the_manifest_and_raw_shows_the_projection() -> None:
    calibration = {layer: LayerCalibration((1.0, -2.0, 0.5), (2.0, 4.0, 0.25)) for layer in LAYERS}
    readouts = _readouts(5)
    state = _state(Manifest(CONCEPTS, LAYERS, calibration), readouts)
    assert state.z_source() == "z-scores: manifest calibration"
    row = readouts[0][state.position]
    assert state.values(state.tokens[0]) == pytest.approx([(row[0] - 1) / 2, (row[1] + 2) / 4, (row[2] - 0.5) / 0.25])
    state.toggle_zscore()
    assert state.z_source() == "raw values" and state.values(state.tokens[0]) == list(row)


def test_the_deepest_hooked_layer_is_shown_first_and_keys_cycle_layers() -> None:
    state = _state(Manifest(CONCEPTS, LAYERS), _readouts(3))
    assert state.layer == 14
    state.step_layer(1)
    assert state.layer == 9
    state.step_layer(1)
    assert state.layer == 3
    asked = _state(Manifest(CONCEPTS, LAYERS), [], ViewOptions(layer=9))
    assert asked.layer == 9
    missing = _state(Manifest(CONCEPTS, LAYERS), [], ViewOptions(layer=7))
    assert missing.layer == 14 and "layer 7 is not hooked" in missing.notices[0].text


def test_server_zscores_cannot_be_turned_raw() -> None:
    state = _state(Manifest(CONCEPTS, LAYERS, zscored=True), _readouts(2))
    state.toggle_zscore()
    assert state.z_source() == "z-scores from the server" and "raw values are not available" in state.notices[0].text
    assert state.values(state.tokens[0]) == list(_readouts(2)[0][state.position])


def test_ring_buffer_keeps_the_last_tokens_and_a_restart_voids_its_turn() -> None:
    state = _state(Manifest(CONCEPTS, LAYERS), _readouts(30), ViewOptions(buffer=10))
    assert [t.text for t in state.tokens] == [f" t{k}" for k in range(20, 30)] and state.seen == 30
    state.apply(TurnStart(2, "again", "chat", 20.0))
    state.apply(Token(2, "x", None, None, 20.5))
    state.apply(TurnStart(2, "again", "chat", 21.0, restart=True))
    assert all(t.turn == 1 for t in state.tokens)


def test_ranking_orders_concepts_by_mean_absolute_value_over_the_window() -> None:
    calibration = {layer: LayerCalibration((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)) for layer in LAYERS}
    readouts = [((0.0, 0.0, 0.0), (1.0, -5.0, 2.0), (0.0, 0.0, 0.0))] * 4 + [((0.0,) * 3, (9.0, 9.0, 9.0), (0.0,) * 3)]
    state = _state(Manifest(CONCEPTS, (3, 14, 9), calibration), readouts, ViewOptions(window=4, top_k=2))
    ranked = state.ranked()
    assert [trace.name for trace in ranked] == ["anger", "fear"]  # window: 3 x (1, -5, 2) and (9, 9, 9)
    assert ranked[0].score == pytest.approx((3 * 5 + 9) / 4) and ranked[0].values == (-5.0, -5.0, -5.0, 9.0)


def test_rate_is_tokens_per_second_of_the_latest_turn() -> None:
    state = _state(Manifest(CONCEPTS, LAYERS), _readouts(11))
    assert state.rate() == pytest.approx(2.0)


def test_sparkline_maps_the_range_onto_eight_blocks_and_blanks_missing_readouts() -> None:
    assert sparkline((-3.0, 0.0, 3.0, None, 99.0), -3.0, 3.0) == "▁▅█ █"


def test_screen_survives_control_characters_and_a_server_without_readout() -> None:
    state = WatchState()
    state.apply(Notice("this server serves no readout", "error"))
    state.apply(TurnStart(1, "\x1b[2Jhi", "chat", 0.0))
    state.apply(Token(1, "bad\x1b[31m\x07text\n", None, None, 0.1))
    console = Console(width=90, height=20, force_terminal=True)
    with console.capture() as capture:
        console.print(render(state, Controls("http://x"), console, 90, 20))
    screen = capture.get()
    assert "\x07" not in screen and "\x1b[2J" not in screen
    plain = Text.from_ansi(screen).plain
    assert "bad\ufffd[31m\ufffdtext" in plain and "no readout" in plain
    assert terminal_text("a\tb\nc\x00") == "a\tb\nc\ufffd"
