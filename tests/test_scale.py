"""``readout.scale``, the readout's one scale: the calibration record against its JSON, z-scores against the plain
formula (floats and tensors alike), running statistics against Python's statistics module, and colour strength,
alpha and the token highlight against hand-worked values. The page's copy of the arithmetic is checked against
this module in a browser (tests/test_serve_ui.py)."""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys

import pytest
import torch

from amygdala.readout.scale import (
    PALETTE,
    Z_FULL,
    CalibrationError,
    LayerCalibration,
    RunningStats,
    alpha_hex,
    calibration_from_json,
    calibration_to_json,
    colour_strength,
    page_constants,
    spreads_every_concept,
    strength_reference,
    token_span,
    zscore,
    zscores,
)

TABLE = {3: LayerCalibration((0.5, -1.0, 2.0), (1.0, 2.0, 0.25)), 7: LayerCalibration((0.0, 1.0, 0.0), (3.0, 0.5, 1.0))}


def test_calibration_round_trips_through_the_manifest_json() -> None:
    data = json.loads(json.dumps(calibration_to_json(TABLE)))
    assert data["layer_3"] == {"mean": [0.5, -1.0, 2.0], "std": [1.0, 2.0, 0.25]} and list(data) == ["layer_3", "layer_7"]
    assert calibration_from_json(data, (3, 7), 3) == TABLE


def test_calibration_from_json_names_every_problem_at_once() -> None:
    data = {"layer_3": {"mean": [0.0, 1.0], "std": [1.0, 1.0, 1.0]}, "layer_7": {"mean": [0, 1, "x"], "std": []},
            "layer_9": {"mean": [0.0, 0.0, 0.0], "std": [1.0, float("nan"), 1.0]}}
    with pytest.raises(CalibrationError) as caught:
        calibration_from_json(data, (3, 7, 9, 11), 3)
    assert str(caught.value) == ("calibration layer_3 mean has 2 values, not one per concept (3); layer_7 mean is not "
                                 "a list of numbers; layer_9 std holds NaN or inf; layer_11 is missing")
    with pytest.raises(CalibrationError, match="must be an object"):
        calibration_from_json([1, 2], (3,), 3)
    assert calibration_from_json({"layer_3": {"mean": [1], "std": [2]}}, (3,)) == {3: LayerCalibration((1.0,), (2.0,))}


def test_spreads_every_concept_refuses_a_zero_or_negative_std() -> None:
    assert spreads_every_concept(TABLE)
    assert not spreads_every_concept({3: LayerCalibration((0.0, 0.0), (1.0, 0.0))})
    assert not spreads_every_concept({3: LayerCalibration((0.0,), (-1.0,))})


def test_zscore_is_the_formula_and_zero_without_spread() -> None:
    assert zscore(5.0, 1.0, 2.0) == (5.0 - 1.0) / 2.0 and zscore(-0.3, 0.7, 0.25) == (-0.3 - 0.7) / 0.25
    assert zscore(5.0, 1.0, 0.0) == 0.0 and zscore(-5.0, 1.0, -2.0) == 0.0
    assert zscores([1.5, 1.0, 2.5], TABLE[3]) == [1.0, 1.0, 2.0]


def test_zscore_on_tensors_equals_it_on_floats_element_by_element() -> None:
    """The torch readout (``projection.calibrate_readout``) z-scores through the same function: its tensors must
    give, bit for bit, what each float gives, zero and negative stds included."""
    generator = torch.Generator().manual_seed(0)
    raw, mean = torch.randn(5, 4, generator=generator), torch.randn(4, generator=generator)
    std = torch.tensor([2.0, 0.0, 0.5, -1.0])
    scored = zscore(raw, mean, std)
    expected = [[zscore(x, m, s) for x, m, s in zip(row, mean.tolist(), std.tolist())] for row in raw.tolist()]
    assert torch.equal(scored, torch.tensor(expected)) and torch.equal(scored[:, 0], (raw[:, 0] - mean[0]) / 2.0)


def test_running_stats_equal_the_statistics_module() -> None:
    rng = random.Random(1)
    readouts = [[[rng.gauss(5 * layer, 1 + c) for c in range(3)] for layer in range(2)] for _ in range(50)]
    stats = RunningStats(2, 3)
    assert stats.record(1) == LayerCalibration((0.0, 0.0, 0.0), (0.0, 0.0, 0.0))
    for readout in readouts:
        stats.add(readout)
    record = stats.record(1)
    for c in range(3):
        column = [readout[1][c] for readout in readouts]
        assert record.mean[c] == pytest.approx(statistics.fmean(column), abs=1e-12)
        assert record.std[c] == pytest.approx(statistics.stdev(column), abs=1e-12)


def test_running_stats_z_score_zero_until_two_readouts() -> None:
    stats = RunningStats(1, 2)
    stats.add([[4.0, -1.0]])
    assert zscores([9.0, 3.0], stats.record(0)) == [0.0, 0.0]
    stats.add([[6.0, -1.0]])
    assert zscores([7.0, 3.0], stats.record(0)) == [pytest.approx(2 / statistics.stdev([4.0, 6.0])), 0.0]


def test_strength_reference_is_z_full_or_a_quantile_of_the_positive_values() -> None:
    assert strength_reference([100.0, -3.0], zscored=True) == Z_FULL
    values = [-5.0, 0.0, *map(float, range(1, 11))]  # ten positives: the 0.9 quantile by index is the 10th
    assert strength_reference(values, zscored=False) == 10.0
    assert strength_reference([*values, 1000.0], zscored=False) == 10.0  # one outlier does not wash out the rest
    assert strength_reference([-1.0, 0.0], zscored=False) == 1.0 and strength_reference([1e-9], False) == 1e-6


def test_colour_strength_is_clamped_to_zero_and_one() -> None:
    assert [colour_strength(v, 3.0) for v in (-1.0, 0.0, 1.5, 3.0, 9.0)] == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert colour_strength(1.0, 0.0) == 1.0


def test_alpha_rounds_half_up_like_javascript() -> None:
    """255 * 0.8 * strength: 102.5 rounds to 103 (0x67), as Math.round does; Python's round would give 102."""
    assert [alpha_hex(s) for s in (0.0, 102.5 / 204, 1.0)] == ["00", "67", "cc"]


def test_token_span_escapes_text_and_title() -> None:
    assert token_span("<b>&", PALETTE[1], 0.5, 'joy "1"') == (
        '<span style="background:#3cb44b66" title="joy &quot;1&quot;">&lt;b&gt;&amp;</span>')


def test_page_constants_are_the_module_constants_as_json() -> None:
    constants = json.loads(json.dumps(page_constants()))
    assert constants["palette"] == list(PALETTE) and constants["z_full"] == Z_FULL
    assert set(constants) == {"palette", "above", "below", "z_full", "raw_quantile", "min_reference", "alpha_max"}


def test_scale_imports_no_torch() -> None:
    """The watch client and the page's server side use it without torch installed."""
    code = "import sys, amygdala.readout.scale; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
