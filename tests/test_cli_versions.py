"""The CLI's start-up check that installed packages fit amygdala's declared requirements (``cli/versions.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from amygdala.cli import main
from amygdala.cli.versions import SKIP_VARIABLE, VersionProblem, version_problems

SRC = Path(__file__).resolve().parents[1] / "src"


def test_version_problems_name_what_does_not_fit_and_pass_what_does() -> None:
    requirements = ["torch==2.13.0", "transformers>=5.23.0", "numpy>=1.26", "mcp>=2.3", "typer>=0.12",
                    'pytest==9.2.0; extra == "test"', 'pywin32>=300; sys_platform == "win32"']
    installed = {"torch": "2.13.0+cpu", "transformers": "4.57.1", "numpy": "2.1.0.dev0", "typer": "0.11.9",
                 "pytest": "8.0.0"}
    assert version_problems(requirements, installed.get) == [
        VersionProblem("transformers", "4.57.1", ">=5.23.0"),
        VersionProblem("mcp", None, ">=2.3"),
        VersionProblem("typer", "0.11.9", ">=0.12"),
    ]
    assert version_problems(requirements[:1], {"torch": "2.12.1"}.get) == [VersionProblem("torch", "2.12.1", "==2.13.0")]


def _fake_environment(folder: Path, transformers: str) -> None:
    """dist-info folders as pip writes them: an amygdala that declares transformers>=5.23.0, and a transformers."""
    for name, version, requires in (("amygdala", "0.1.0", ["transformers>=5.23.0", 'pytest==9.2.0; extra == "test"']),
                                    ("transformers", transformers, [])):
        info = folder / f"{name}-{version}.dist-info"
        info.mkdir(parents=True)
        lines = ["Metadata-Version: 2.4", f"Name: {name}", f"Version: {version}",
                 *(f"Requires-Dist: {line}" for line in requires)]
        (info / "METADATA").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_cli_refuses_to_start_on_a_downgraded_transformers_in_one_line_with_the_pip_command(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Regression: `pip install steering-vectors` (with its dependencies) put transformers 4.57 beside amygdala,
    which ran on and failed later with "Tokenizer class TokenizersBackend does not exist"."""
    _fake_environment(tmp_path, "4.57.1")
    monkeypatch.syspath_prepend(str(tmp_path))  # importlib.metadata finds these dist-infos first
    monkeypatch.delenv(SKIP_VARIABLE, raising=False)
    assert main(["--help"]) == 2
    assert capsys.readouterr().err == (
        "amygdala: error: transformers 4.57.1 is installed, amygdala needs transformers>=5.23.0: "
        f"pip install 'transformers>=5.23.0' (or set {SKIP_VARIABLE}=1 to run anyway)\n")
    monkeypatch.setenv(SKIP_VARIABLE, "1")
    assert main(["--help"]) == 0


def test_cli_starts_when_the_installed_versions_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    _fake_environment(tmp_path, "5.23.0")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(SKIP_VARIABLE, raising=False)
    assert main(["--help"]) == 0
    assert "Emotion readout vectors" in capsys.readouterr().out


def test_cli_start_and_its_version_check_import_no_torch() -> None:
    code = ("import sys; from amygdala.cli import main; code = main(['bench', '--help']); "
            "assert code == 0, code; loaded = {'torch', 'transformers'} & set(sys.modules); assert not loaded, loaded")
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", code], timeout=120, env=environ, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
