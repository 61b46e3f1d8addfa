"""The stages run file to file (what the commands call), with a model loaded once and passed in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from amygdala.artifact import load_artifact
from amygdala.evaluation.results import EvalOptions
from amygdala.forward.models import LoadedModel
from amygdala.forward.pooling import PoolingError, PoolingSpec
from amygdala.pipeline import evaluate_files, read_out_files, train_files
from amygdala.readout.projection import ReadoutOptions
from amygdala.training.stage import TrainOptions

from eval_helpers import write_examples_dir


@pytest.fixture(scope="module")
def trained(tiny_model: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pipeline")
    examples = write_examples_dir(root / "examples")
    run = train_files(examples, root / "out" / "readout.safetensors", TrainOptions(target_layers=(1, 3)),
                      model=tiny_model, emotions=("fear", "joy"), write_elh=True)
    assert run.manifest_path == root / "out" / "readout.json" and run.elh_path is not None and run.elh_path.exists()
    assert run.artifact.concepts == ("fear", "joy") and run.seconds > 0
    return examples, run.vectors_path


def test_train_files_writes_the_artifact_it_returns(trained: tuple[Path, Path], tiny_model: LoadedModel) -> None:
    loaded = load_artifact(trained[1])
    assert loaded.record is not None and loaded.record.model.fingerprint == tiny_model.fingerprint
    assert loaded.pooling == PoolingSpec() and loaded.layers == (1, 3)


def test_evaluate_files_pools_as_trained_unless_told_and_writes_the_report(trained: tuple[Path, Path],
                                                                           tiny_model: LoadedModel,
                                                                           tmp_path: Path) -> None:
    examples, vectors = trained
    run = evaluate_files(vectors, examples, tmp_path / "report", EvalOptions(seed=1), model=tiny_model, n_texts=2)
    assert run.evaluation.options.pooling == PoolingSpec("mean_last", 1) and run.evaluation.options.method == "lda_diagonal"
    report = json.loads(run.json_path.read_text())
    assert report["options"]["pooling"] == "mean_last" and report["options"]["skip_tokens"] == 1
    assert report["options"]["seed"] == 1 and len(report["readouts"]) == 2 and run.html_path.exists()
    last = evaluate_files(vectors, examples, tmp_path / "last", model=tiny_model, pooling="last")
    assert last.evaluation.options.pooling == PoolingSpec("last", 0), "a new rule takes its own default skip"


def test_read_out_files_overrides_the_trained_pooling_and_refuses_a_bad_spec_before_loading(
        trained: tuple[Path, Path], tiny_model: LoadedModel, tmp_path: Path) -> None:
    texts = tmp_path / "texts.txt"
    texts.write_text("A happy day.\nA dark night.\n")
    run = read_out_files(trained[1], str(texts), tmp_path / "out.jsonl", ReadoutOptions(zscore=True),
                         model=tiny_model, pooling="last")
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [(line["pooling"], line["skip_tokens"], line["zscore"]) for line in lines] == [("last", 0, True)] * 2
    assert torch.tensor(lines[1]["readout"]).shape == (2, 2) and run.spec == PoolingSpec("last", 0)
    torch.testing.assert_close(torch.tensor(lines[0]["readout"]), run.readouts[0].values[-1])
    with pytest.raises(PoolingError, match="skip_tokens 2 must be >= 0, and 0 unless pooling is 'mean'"):
        read_out_files(trained[1], str(texts), tmp_path / "bad.jsonl", model="no-such-model", pooling="last",
                       skip_tokens=2)
    assert not (tmp_path / "bad.jsonl").exists()
