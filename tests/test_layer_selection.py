"""Layer selection: a planted per-layer signal is found, the curve round-trips, and ``train --target-layers auto``
records it on the real model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from amygdala.artifact import load_artifact
from amygdala.cli import main
from amygdala.training.layers import LayerCurve, LayerSelectionError, layer_curve
from amygdala.training.splits import LabelledTexts

from eval_helpers import write_examples_dir


def _planted(signal_layers: tuple[int, ...], n_layers: int = 5, n: int = 96,
             hidden: int = 24) -> tuple[torch.Tensor, LabelledTexts]:
    """Two concepts; each concept's positives are shifted along its own axis, only at ``signal_layers``."""
    generator = torch.Generator().manual_seed(0)
    pooled = torch.randn((n, n_layers, hidden), generator=generator)
    positive = torch.zeros((n, 2), dtype=torch.bool)
    positive[: n // 3, 0] = True
    positive[n // 3: 2 * n // 3, 1] = True
    for layer in signal_layers:
        pooled[: n // 3, layer, 0] += 4.0
        pooled[n // 3: 2 * n // 3, layer, 1] += 4.0
    keys = tuple(f"node{i}" for i in range(n))
    return pooled, LabelledTexts(("a", "b"), keys, keys, positive, ~positive)


def test_layer_curve_keeps_the_layers_that_carry_the_planted_signal() -> None:
    pooled, data = _planted((1, 3))
    curve = layer_curve(pooled, data, [10, 11, 12, 13, 14], k=2, folds=4, seed=0)
    assert curve.chosen == (11, 13)
    assert min(curve.mean_auroc[1], curve.mean_auroc[3]) > 0.95
    assert max(curve.mean_auroc[i] for i in (0, 2, 4)) < 0.75
    assert curve.n_train_texts == 96 and curve.method == "diff_of_means"


def test_layer_curve_round_trips_through_json_with_nan() -> None:
    curve = LayerCurve((0, 1), (0.7, math.nan), (0.6, math.nan), (0,), "lda", 4, 0, 12)
    stored = json.loads(json.dumps(curve.to_json(), allow_nan=False))
    back = LayerCurve.from_json(stored)
    assert back.layers == (0, 1) and back.chosen == (0,) and math.isnan(back.mean_auroc[1])
    assert stored["mean_auroc"] == [0.7, None]


def test_layer_curve_rejects_impossible_options_in_one_message() -> None:
    pooled, data = _planted((1,))
    with pytest.raises(LayerSelectionError, match=r"k=9 must be within 1\.\.5.*folds=1 must be >= 2"):
        layer_curve(pooled, data, list(range(5)), k=9, folds=1)


@pytest.mark.slow
def test_cli_train_auto_layers_records_the_curve_and_trains_the_chosen_layers(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_examples_dir(tmp_path / "examples")
    output = tmp_path / "readout.safetensors"
    code = main(["train", "--model", "default", "--training-data-dir", str(data), "--target-layers", "auto:3",
                 "--pooling", "mean", "--skip-tokens", "1", "--output", str(output), "--no-progress"])
    assert code == 0
    artifact = load_artifact(output)
    assert artifact.record is not None and artifact.record.layer_curve is not None
    curve = artifact.record.layer_curve
    assert curve.layers == tuple(range(18)) and len(curve.chosen) == 3 and artifact.layers == curve.chosen
    best = sorted(range(18), key=lambda i: -curve.mean_auroc[i])[:3]
    assert set(curve.chosen) == set(best)
    assert "layer selection" in capsys.readouterr().out
