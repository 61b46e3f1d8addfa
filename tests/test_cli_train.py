"""`amygdala train` end to end into a temp dir, and bad input failing with one line and no artifact."""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors import safe_open

from amygdala.artifact import load_artifact
from amygdala.cli import main
from amygdala.extraction.examples import Example
from amygdala.forward.pooling import PoolingSpec

TEXTS = ["She laughed at the station.", "The report is due Monday", "I could not stop shaking!",
         "We planted tomatoes;", "Why does he never listen?", "Golden sunset over the bay"]


def _write_examples(folder: Path) -> Path:
    folder.mkdir()
    for emotion, positives in (("joy", [0, 5]), ("fear", [2, 4]), ("calm", [3, 5])):
        rows = [Example(emotion, "positive" if i in positives else "negative", text, f"k{i}", 5.0,
                        "train" if i != 1 else "heldout") for i, text in enumerate(TEXTS)]
        (folder / f"{emotion}.jsonl").write_text("\n".join(row.to_json() for row in rows) + "\n")
    return folder


def test_cli_train_writes_the_artifact_elh_and_manifest(tiny_model_dir: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    data = _write_examples(tmp_path / "examples")
    output = tmp_path / "out" / "readout.safetensors"
    code = main(["train", "--model", str(tiny_model_dir), "--training-data-dir", str(data), "--target-layers", "3,1",
                 "--output", str(output), "--format", "eLH", "--emotions", "joy,fear", "--batch-size", "2",
                 "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    assert code == 0
    summary = capsys.readouterr().out
    assert "trained 2 concepts x 2 layers [1, 3] on 5 unique texts" in summary and str(output) in summary
    artifact = load_artifact(output)
    assert artifact.concepts == ("fear", "joy") and artifact.layers == (1, 3)
    assert artifact.record is not None and artifact.record.counts["joy"] == (2, 3)
    with safe_open(str(tmp_path / "out" / "readout.eLH.safetensors"), framework="pt") as handle:
        assert handle.get_slice("vectors").get_shape() == [2, 2, 64]
    assert any((tmp_path / "cache").rglob("chunk-*.safetensors"))


def test_cli_train_defaults_layers_and_honours_manifest_method_and_pooling(tiny_model_dir: Path,
                                                                          tmp_path: Path) -> None:
    data = _write_examples(tmp_path / "examples")
    output, manifest = tmp_path / "r.safetensors", tmp_path / "meta" / "manifest.json"
    code = main(["train", "--model", str(tiny_model_dir), "--training-data-dir", str(data), "--output", str(output),
                 "--manifest", str(manifest), "--method", "lda", "--pooling", "mean_last", "--skip-tokens", "1",
                 "--no-progress"])
    assert code == 0 and not (tmp_path / "r.json").exists()
    artifact = load_artifact(output, manifest)
    assert artifact.layers == (1, 2, 3) and artifact.concepts == ("calm", "fear", "joy")
    assert artifact.record is not None and artifact.record.method == "lda"
    assert artifact.record.pooling == PoolingSpec("mean_last", 1)


@pytest.mark.slow
def test_cli_train_rejects_layers_out_of_range_in_one_line_without_writing(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    data = _write_examples(tmp_path / "examples")
    output = tmp_path / "readout.safetensors"
    code = main(["train", "--training-data-dir", str(data), "--target-layers", "5,40", "--output", str(output),
                 "--no-progress"])
    error = capsys.readouterr().err
    assert code == 2
    assert error == "amygdala: error: target layers [40] out of range: the model has 18 layers (0..17)\n"
    assert list(tmp_path.iterdir()) == [data]


def test_cli_train_rejects_a_malformed_layer_list_before_loading_a_model(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--training-data-dir", str(tmp_path), "--target-layers", "5,x"])
    assert code == 2 and "not a comma-separated list of layer indices" in capsys.readouterr().err


def test_cli_bench_train_is_registered(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "train", "--help"]) == 0
    assert "Train-stage benchmark" in capsys.readouterr().out


def test_cli_train_on_a_device_with_a_token_budget_says_where_it_ran(tiny_model_dir: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    data = _write_examples(tmp_path / "examples")
    output = tmp_path / "readout.safetensors"
    code = main(["train", "--model", str(tiny_model_dir), "--training-data-dir", str(data), "--output", str(output),
                 "--device", "cpu", "--batch-tokens", "40", "--target-layers", "2", "--no-progress"])
    assert code == 0
    assert "float32 forward on cpu)" in capsys.readouterr().out
    assert load_artifact(output).record.forward_dtype == "float32"  # type: ignore[union-attr]


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="refusing a GPU this machine lacks")
def test_cli_train_refuses_a_missing_gpu_in_one_line_before_loading(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    data = _write_examples(tmp_path / "examples")
    code = main(["train", "--training-data-dir", str(data), "--output", str(tmp_path / "r.safetensors"),
                 "--device", "cuda"])
    assert code == 2
    assert capsys.readouterr().err == ("amygdala: error: device 'cuda': no CUDA GPU is visible to torch here: "
                                       "use --device cpu\n")
    assert list(tmp_path.iterdir()) == [data]


@pytest.mark.parametrize(("command", "expected"), [("train", "--random-model"), ("readout", "--quick")])
def test_cli_bench_runs_its_installed_module_and_passes_arguments_on(command: str, expected: str,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Regression: `amygdala bench train|readout` ran benchmarks/bench_<x>.py out of a source checkout, so it failed
    from a wheel; it runs amygdala.bench.<x> now."""
    assert main(["bench", command, "--", "--help"]) == 0
    out = capsys.readouterr().out
    assert f"usage: amygdala bench {command}" in out and expected in out


def test_cli_train_records_the_chosen_shrinkage_and_refuses_neutral_pcs_without_neutral_texts(
        tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _write_examples(tmp_path / "examples")
    output = tmp_path / "r.safetensors"
    arguments = ["train", "--model", str(tiny_model_dir), "--training-data-dir", str(data), "--target-layers", "1,3",
                 "--method", "lda_oas", "--no-progress"]
    assert main([*arguments, "--output", str(output)]) == 0
    assert "shrinkage chosen per layer: 1: " in capsys.readouterr().out
    record = load_artifact(output).record
    assert record is not None and record.method == "lda_oas" and set(record.shrinkage or {}) == {1, 3}
    assert main([*arguments, "--output", str(tmp_path / "n.safetensors"), "--remove-neutral-pcs", "1"]) == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1 and "--remove-neutral-pcs" in error and "has 0" in error
    assert not (tmp_path / "n.safetensors").exists()
