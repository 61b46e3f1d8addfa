"""`amygdala eval` end to end on Gemma: a trained artifact, its report, the --fail-under gate and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from amygdala.artifact import ReadoutArtifact, load_artifact, save_artifact
from amygdala.cli import main

from eval_helpers import write_examples_dir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(examples dir, readout.safetensors) trained by `amygdala train` with mean pooling at layers 4 and 9."""
    root = tmp_path_factory.mktemp("eval")
    data = write_examples_dir(root / "examples")
    vectors = root / "artifact" / "readout.safetensors"
    assert main(["train", "--training-data-dir", str(data), "--target-layers", "4,9", "--pooling", "mean",
                 "--skip-tokens", "1", "--output", str(vectors), "--no-progress"]) == 0
    return data, vectors


def test_cli_eval_writes_the_report_with_the_trained_pooling_and_the_texts(
        trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, vectors = trained
    texts = tmp_path / "texts.jsonl"
    texts.write_text('{"id": "chat-1", "text": "I cannot believe we finally won!"}\nThe cat slept.\n')
    code = main(["eval", "--vectors", str(vectors), "--training-data-dir", str(data), "--report-dir",
                 str(tmp_path / "report"), "--texts", str(texts), "--fail-under", "0.5", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert (report["options"]["pooling"], report["options"]["skip_tokens"]) == ("mean", 1)
    assert report["layers"] == [4, 9] and report["summary"]["n_heldout_texts"] == 7
    assert [r["label"] for r in report["readouts"]] == ["chat-1", "2"]
    assert report["readouts"][0]["tokens"][0] == "<bos>"
    assert (tmp_path / "report" / "report.html").read_text().startswith("<!doctype html>")
    assert "held-out separation at layers 4, 9" in out and "report.html" in out


def test_cli_eval_fail_under_exits_1_with_one_line(trained: tuple[Path, Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Random unit vectors in place of the trained ones cannot reach a mean AUROC of 0.99."""
    data, vectors = trained
    artifact = load_artifact(vectors)
    generator = torch.Generator().manual_seed(0)
    noise = {layer: torch.nn.functional.normalize(torch.randn(tensor.shape, generator=generator), dim=1)
             for layer, tensor in artifact.vectors.items()}
    random_vectors = tmp_path / "random.safetensors"
    save_artifact(ReadoutArtifact(artifact.concepts, artifact.layers, noise, artifact.hidden_size,
                                  record=artifact.record), random_vectors)
    code = main(["eval", "--vectors", str(random_vectors), "--training-data-dir", str(data), "--report-dir",
                 str(tmp_path / "report"), "--fail-under", "0.99", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and err[0].startswith("amygdala: mean held-out AUROC") and "--fail-under 0.99" in err[0]
    assert (tmp_path / "report" / "report.json").exists()


def test_cli_eval_rejects_bad_input_in_one_line(trained: tuple[Path, Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    data, vectors = trained
    assert main(["eval", "--vectors", str(vectors), "--training-data-dir", str(data), "--fail-under", "1.5"]) == 2
    assert "--fail-under" in capsys.readouterr().err
    assert main(["eval", "--vectors", str(tmp_path / "missing.safetensors"), "--training-data-dir", str(data)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]


def test_cli_eval_folds_writes_cross_validation_with_intervals(trained: tuple[Path, Path], tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    data, vectors = trained
    code = main(["eval", "--vectors", str(vectors), "--training-data-dir", str(data), "--report-dir",
                 str(tmp_path / "report"), "--folds", "3", "--fail-under", "0.5", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    crossval = report["crossval"]
    assert (crossval["folds"], crossval["n_texts"], crossval["n_nodes"]) == (3, 22, 22)
    assert [c["concept"] for c in crossval["per_concept"]] == ["anger", "fear", "joy"]
    for figure in [c["auroc"] for c in crossval["per_concept"]] + [
            {"estimate": crossval[name], "low": crossval[f"{name}_ci"][0], "high": crossval[f"{name}_ci"][1]}
            for name in ("mean_auroc", "top1", "top3", "random_mean_auroc")]:
        assert figure["low"] <= figure["estimate"] <= figure["high"]
    assert crossval["mean_auroc"] > crossval["random_mean_auroc"]
    assert report["options"]["folds"] == 3 and report["valence_check"] is None
    assert "3-fold cross-validation by node" in out and "mean AUROC" in out
    assert "3-fold cross-validation by node" in (tmp_path / "report" / "report.html").read_text()


@pytest.mark.parametrize(("folds", "message"), [("1", "--folds 1 must be >= 2"),
                                                 ("23", "--folds 23 is more than the 22 node(s)")])
def test_cli_eval_rejects_impossible_folds_in_one_line(trained: tuple[Path, Path], tmp_path: Path, folds: str,
                                                       message: str, capsys: pytest.CaptureFixture[str]) -> None:
    data, vectors = trained
    code = main(["eval", "--vectors", str(vectors), "--training-data-dir", str(data), "--report-dir",
                 str(tmp_path / "report"), "--folds", folds, "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "report").exists()
