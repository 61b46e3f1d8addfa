"""The battery's registry and `amygdala eval --checks` end to end on Gemma: every check's section lands in
report.json and report.html (rendered in headless Chromium where it is installed), and bad input is one line."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from amygdala.cli import main
from amygdala.evaluation.checks import CHECKS, CheckError, parse_checks
from amygdala.extraction.examples import Example

from eval_helpers import examples

pytestmark = pytest.mark.slow

#: eval_helpers' emotions under names the bundled battery data covers.
RENAMED = {"joy": "excited", "anger": "frustrated", "fear": "anxious"}


def test_parse_checks_all_keeps_the_registry_order_and_unknown_names_list_the_known_ones() -> None:
    assert parse_checks("all") == tuple(CHECKS)
    assert parse_checks("logit-lens, sweeps") == ("sweeps", "logit_lens")
    with pytest.raises(CheckError) as error:
        parse_checks("sweeps,vibes")
    assert "vibes" in str(error.value) and all(name in str(error.value) for name in CHECKS)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("battery")
    data = root / "examples"
    data.mkdir()
    for old, new in RENAMED.items():
        rows = [Example(new, e.polarity, e.text, e.key, e.score, e.split) for e in examples() if e.emotion == old]
        (data / f"{new}.jsonl").write_text("".join(row.to_json() + "\n" for row in rows), encoding="utf-8")
    vectors = root / "artifact" / "readout.safetensors"
    assert main(["train", "--training-data-dir", str(data), "--target-layers", "6", "--output", str(vectors),
                 "--no-progress"]) == 0
    return data, vectors


def _headless_dom(page: Path) -> str | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        return None
    done = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


def test_cli_eval_checks_all_writes_every_section(trained: tuple[Path, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    data, vectors = trained
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("<script>alert('x')</script> I am furious about the broken build!\n")
    report = tmp_path / "report"
    code = main(["eval", "--vectors", str(vectors), "--training-data-dir", str(data), "--report-dir", str(report),
                 "--checks", "all", "--corpus", str(corpus), "--corpus-sentences", "4", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    battery = json.loads((report / "report.json").read_text())["battery"]
    assert list(battery) == list(CHECKS)
    assert battery["sweeps"]["n_cases"] > 0 and battery["negation"]["n_pairs"] == 12
    assert battery["scenarios"]["n_scenarios"] == 24 and sum(map(sum, battery["scenarios"]["confusion"])) == 24
    assert set(battery["top_tokens"]["per_concept"]) == set(RENAMED.values())
    assert battery["top_tokens"]["sources"] == ["rated sentences", str(corpus)]
    assert len(battery["logit_lens"]["entries"]) == 3 and len(battery["logit_lens"]["entries"][0]["top"]) == 10
    assert "no chat template" in battery["chat_roles"]["note"]
    assert battery["arousal"]["n_sentences"] == 4 and battery["arousal"]["corpus"]
    assert "validation battery" in out and "sweeps" in out
    page = (report / "report.html").read_text()
    assert "<script>alert" not in page
    dom = _headless_dom(report / "report.html") or page
    for name in CHECKS:
        assert f'id="check-{name}"' in dom
    assert "<mark>" in dom


def test_cli_eval_checks_bad_input_is_one_line_and_writes_nothing(trained: tuple[Path, Path], tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    data, vectors = trained
    report = tmp_path / "report"
    no_slot = tmp_path / "templates.jsonl"
    no_slot.write_text('{"id": "t", "template": "I ran far.", "values": [1, 2, 3], "rises": ["tired"]}\n')
    binary = tmp_path / "corpus.bin"
    binary.write_bytes(b"\xff\xfe\x00\x01")
    base = ["eval", "--vectors", str(vectors), "--training-data-dir", str(data), "--report-dir", str(report)]
    cases = [(["--checks", "sweeps,vibes"], "vibes"), (["--checks", "sweeps", "--sweep-templates", str(no_slot)],
                                                        f"{no_slot} line 1"),
             (["--checks", "top_tokens", "--corpus", str(binary)], str(binary))]
    for extra, named in cases:
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and named in err[0], err
    assert not report.exists()
