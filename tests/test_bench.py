"""``amygdala bench``: the benchmarks installed with the package (``amygdala.bench``), run through the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from amygdala.bench.peer import PEER_COLUMNS, min_cosine, peer_run
from amygdala.bench.sample import build_examples, load_nodes
from amygdala.cli import main
from amygdala.forward.models import LoadedModel
from amygdala.training.stage import CAA_RECIPE, TrainOptions, train


def test_bench_train_without_the_peer_names_the_pip_command_and_reports_its_own_figures(
        tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Regression: without the optional steering-vectors peer, `amygdala bench train --quick` failed with
    "unexpected ModuleNotFoundError"."""
    # None in sys.modules: the import system itself refuses the import with ModuleNotFoundError (as if absent).
    monkeypatch.setitem(sys.modules, "steering_vectors", None)
    code = main(["bench", "train", "--quick", "--threads", "1", "--", "--model", str(tiny_model_dir),
                 "--concepts", "2"])
    out, err = capsys.readouterr()
    assert code == 0, err
    peer_lines = [line for line in err.splitlines() if "steering-vectors" in line]
    assert len(peer_lines) == 1 and "pip install --no-deps steering-vectors==0.12.2" in peer_lines[0]
    result = json.loads(out.strip().splitlines()[-1])
    assert result["overhead_vs_forward"] > 0 and result["time_ratio_layer4_vs_layer17"] > 0
    assert result["rss_ratio_10x"] > 0 and result["details"]["examples"] == 12
    assert not set(PEER_COLUMNS) & (set(result) | set(result["details"]["cpu_ratios"]))
    assert set(result["details"]["seconds"]) == {"train", "bare_forward", "layer4", "layer17"}


def test_bench_peer_when_installed_trains_the_vectors_amygdala_trains(tiny_model: LoadedModel) -> None:
    """The peer's columns compare like with like: steering-vectors' mean of last-token differences points where
    amygdala's diff-of-means with last pooling does (the benchmark's min_cosine_vs_steering_vectors)."""
    pytest.importorskip("steering_vectors", reason="the optional peer: pip install --no-deps steering-vectors==0.12.2")
    run = peer_run()
    assert run is not None
    examples = build_examples(load_nodes(60), n_concepts=2, pairs=3)
    ours = train(tiny_model, examples, TrainOptions(**CAA_RECIPE, target_layers=(1, 3), batch_size=4))
    assert min_cosine(ours, run(tiny_model, examples, (1, 3), 4)) > 0.999
