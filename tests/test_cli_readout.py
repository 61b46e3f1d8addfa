"""`amygdala readout` and `amygdala serve` end to end: real arguments, real files, documented failures."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import torch

from amygdala.artifact import save_artifact
from amygdala.cli import main
from amygdala.forward.models import LoadedModel
from amygdala.forward.pooling import Pooling, PoolingSpec, pool_readout
from amygdala.readout.attach import read_text
from amygdala.readout.projection import ReadoutOptions

from readout_helpers import concept_artifact

pytestmark = pytest.mark.slow
TEXTS = ["I am thrilled about the trip!", "The night was dark and full of strange sounds."]


@pytest.fixture(scope="module")
def vectors(smollm2: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli-artifact") / "readout.safetensors"
    save_artifact(concept_artifact(smollm2), path)
    return path


@pytest.fixture(scope="module")
def uncalibrated(smollm2: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli-bare") / "readout.safetensors"
    save_artifact(replace(concept_artifact(smollm2), calibration=None), path)
    return path


def _input_file(folder: Path) -> Path:
    path = folder / "texts.jsonl"
    path.write_text(json.dumps({"id": "a", "text": TEXTS[0]}) + "\n\n" + TEXTS[1] + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("pooling", ["mean", "mean_last"])
def test_readout_writes_pooled_lines_equal_to_the_python_api(tmp_path: Path, vectors: Path, smollm2: LoadedModel,
                                                             pooling: Pooling) -> None:
    output = tmp_path / "out.jsonl"
    code = main(["readout", "--vectors", str(vectors), "--model", "smollm2", "--input", str(_input_file(tmp_path)),
                 "--output", str(output), "--pooling", pooling, "--skip-tokens", "1", "--no-progress"])
    assert code == 0
    lines = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert [line["id"] for line in lines] == ["a", 3]
    assert lines[0]["concepts"] == ["joy", "anger", "fear"] and lines[0]["layers"] == [5, 15, 24]
    artifact = concept_artifact(smollm2)
    for line, text in zip(lines, TEXTS):
        expected = pool_readout(read_text(smollm2, artifact, text).values, PoolingSpec(pooling, skip_tokens=1))
        assert line["pooling"] == pooling
        torch.testing.assert_close(torch.tensor(line["readout"]), expected, rtol=1e-4, atol=1e-3)


def test_readout_per_token_zscore_html_from_stdin(tmp_path: Path, vectors: Path, smollm2: LoadedModel,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("A <b>bold</b> & happy day\n"))
    output, page = tmp_path / "tokens.jsonl", tmp_path / "page.html"
    code = main(["readout", "--vectors", str(vectors), "--model", "smollm2", "--input", "-", "--output", str(output),
                 "--per-token", "--zscore", "--html", str(page), "--view", "--no-progress"])
    assert code == 0
    line = json.loads(output.read_text(encoding="utf-8"))
    expected = read_text(smollm2, concept_artifact(smollm2), "A <b>bold</b> & happy day", ReadoutOptions(zscore=True))
    assert line["tokens"] == list(expected.tokens) and line["token_ids"] == list(expected.token_ids)
    torch.testing.assert_close(torch.tensor(line["readout"]), expected.values, rtol=1e-4, atol=1e-3)
    html = page.read_text(encoding="utf-8")
    assert "&lt;" in html and "&amp;" in html and "<b>" not in html
    assert "happy" in capsys.readouterr().out


def test_readout_rejects_a_json_line_without_text_before_loading(tmp_path: Path, vectors: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_text('{"text": "fine"}\n{"id": 2, "body": "no text"}\n', encoding="utf-8")
    output = tmp_path / "out.jsonl"
    assert main(["readout", "--vectors", str(vectors), "--input", str(source), "--output", str(output)]) == 2
    assert f"{source}:2" in capsys.readouterr().err and not output.exists()


def test_readout_zscore_without_calibration_fails_with_one_line(tmp_path: Path, uncalibrated: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["readout", "--vectors", str(uncalibrated), "--input", str(_input_file(tmp_path)),
                 "--output", str(tmp_path / "out.jsonl"), "--zscore", "--steer", "nope=2"])
    error = capsys.readouterr().err
    assert code == 2 and "calibration" in error and "nope" in error and len(error.strip().splitlines()) == 1


def test_serve_refuses_steering_without_vectors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--steer", "joy=1"]) == 2
    assert "--vectors" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_command_serves_readouts_on_loopback(vectors: Path) -> None:
    port = _free_port()
    env = {**os.environ, "AMYGDALA_API_KEY": "k"}
    process = subprocess.Popen([sys.executable, "-m", "amygdala.cli", "serve", "--vectors", str(vectors),
                                "--model", "smollm2", "--port", str(port)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url, headers = f"http://127.0.0.1:{port}", {"Authorization": "Bearer k"}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            try:
                if httpx.get(f"{url}/v1/models", headers=headers).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        assert httpx.get(f"{url}/v1/readout/manifest").status_code == 401
        body = httpx.post(f"{url}/v1/completions", headers=headers, timeout=60,
                          json={"prompt": "Hello", "max_tokens": 2, "temperature": 0}).json()
        assert len(body["choices"][0]["readout"]) == 2 and body["model"] == "smollm2"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_readout_of_a_0_1_0_artifact_reads_the_numbers_that_release_wrote(tmp_path: Path) -> None:
    """Regression guard for the typed training record: the checked-in artifact (mean pooling, BOS skipped, from
    its manifest) gives the z-scored pooled readouts amygdala 0.1.0 wrote for the same texts."""
    data = Path(__file__).parent / "data" / "artifacts_0.1.0" / "gemma"
    output = tmp_path / "out.jsonl"
    assert main(["readout", "--vectors", str(data / "readout.safetensors"), "--input", str(data / "texts.jsonl"),
                 "--output", str(output), "--zscore", "--no-progress"]) == 0
    expected = [json.loads(line) for line in (data / "readout_0.1.0.jsonl").read_text().splitlines()]
    actual = [json.loads(line) for line in output.read_text().splitlines()]
    for now, then in zip(actual, expected, strict=True):
        assert {k: v for k, v in now.items() if k != "readout"} == {k: v for k, v in then.items() if k != "readout"}
        torch.testing.assert_close(torch.tensor(now["readout"]), torch.tensor(then["readout"]), rtol=1e-4, atol=1e-4)


def test_readout_combine_layers_writes_the_mean_of_the_layers_z_scores(tmp_path: Path, gemma: LoadedModel,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """On the embedded model: one pooled readout per concept, the average over layers of the pooled z-scores;
    without --zscore the flag is a usage error (exit 2) naming the fix, before any model work."""
    vectors = tmp_path / "gemma.safetensors"
    save_artifact(concept_artifact(gemma), vectors)
    output = tmp_path / "combined.jsonl"
    arguments = ["readout", "--vectors", str(vectors), "--input", str(_input_file(tmp_path)), "--combine-layers",
                 "mean", "--no-progress"]
    assert main([*arguments, "--output", str(output), "--zscore"]) == 0
    lines = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert lines[0]["combine_layers"] == "mean" and lines[0]["layers"] == list(concept_artifact(gemma).layers)
    for line, text in zip(lines, TEXTS):
        per_layer = read_text(gemma, concept_artifact(gemma), text, ReadoutOptions(zscore=True)).values
        expected = pool_readout(per_layer, PoolingSpec()).mean(dim=0)
        torch.testing.assert_close(torch.tensor(line["readout"]), expected, rtol=1e-4, atol=1e-3)
    capsys.readouterr()
    assert main([*arguments, "--output", str(tmp_path / "raw.jsonl")]) == 2
    error = capsys.readouterr().err
    assert error.strip().splitlines()[-1].endswith("averages the layers' z-scores: add --zscore")
    assert not (tmp_path / "raw.jsonl").exists()
