"""The main job end to end: bundled sample -> examples -> artifact -> report, through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors import safe_open

from amygdala.cli import main


def test_demo_writes_examples_artifact_and_report(tiny_model_dir: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["demo", "--model", str(tiny_model_dir), "--output-dir", str(out), "--no-progress"]) == 0
    stdout = capsys.readouterr().out
    manifest = json.loads((out / "readout.json").read_text())
    assert len(manifest["concepts"]) == 18 and manifest["hidden_size"] == 64
    with safe_open(str(out / "readout.safetensors"), "pt") as handle:
        assert sorted(handle.keys()) == sorted(f"layer_{layer}.vectors" for layer in manifest["layers"])
    assert {p.name for p in (out / "examples").iterdir()} == {f"{c}.jsonl" for c in manifest["concepts"]} | {"extract.json"}
    report = json.loads((out / "report" / "report.json").read_text())
    assert report["summary"]["n_concepts"] == 18
    lexical = report["lexical_control"]  # the bundled control set covers every concept of the bundled sample
    assert lexical["n_texts"] == 90 and len(lexical["per_concept"]) == 18 and report["crossval"] is None
    assert "mean held-out AUROC" in stdout and str(out / "report" / "report.html") in stdout
    assert "device: cpu (float32)" in stdout
    assert any((out / "activations").rglob("chunk-*.safetensors")), "train leaves its activations for eval"


def test_demo_rerun_replaces_its_own_outputs(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["demo", "--model", str(tiny_model_dir), "--output-dir", str(out), "--no-progress", "--target-layers", "1"]
    assert main(args) == 0
    first = (out / "readout.safetensors").read_bytes()
    assert main(args) == 0
    assert (out / "readout.safetensors").read_bytes() == first
