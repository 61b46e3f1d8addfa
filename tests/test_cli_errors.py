"""The CLI's error table: amygdala's own errors (and file errors) are one line and exit 2, anything else is one line
with a hint and exit 1, ``--debug`` shows the traceback; and the root app's command order."""

from __future__ import annotations

from pathlib import Path

import pytest

from amygdala.cli import main
from amygdala.cli.errors import ERROR_TABLE, known_message, rank_prefix
from amygdala.errors import AmygdalaError
from amygdala.outputs.atomic import OutputError


def test_the_error_table_knows_amygdala_and_file_errors_only() -> None:
    assert [kind for kind, _ in ERROR_TABLE] == [AmygdalaError, OSError]
    assert known_message(OutputError("cannot write x: disk full")) == "cannot write x: disk full"
    assert known_message(FileNotFoundError(2, "No such file or directory", "x")) == (
        "[Errno 2] No such file or directory: 'x'")
    assert known_message(KeyError("surprise")) is None


def test_an_unexpected_error_is_one_line_with_a_hint_and_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Fault injection in the one library call ``train`` makes: the CLI must not print a traceback."""
    import amygdala.pipeline

    def broken(*_args: object, **_kwargs: object) -> None:
        raise KeyError("an internal bug\nover two lines")

    monkeypatch.setattr(amygdala.pipeline, "train_files", broken)
    assert main(["train", "--training-data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err == ("amygdala: error: unexpected KeyError: 'an internal bug\\nover two lines' "
                   "(rerun with --debug for the traceback)\n")
    with pytest.raises(KeyError, match="an internal bug"):
        main(["--debug", "train", "--training-data-dir", str(tmp_path)])


def test_a_known_error_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--training-data-dir", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("amygdala: error: ") and err.count("\n") == 1 and str(tmp_path / "none") in err


def test_each_rank_of_a_launched_run_names_itself_in_its_error_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert rank_prefix({}) == "" and rank_prefix({"RANK": "0", "WORLD_SIZE": "1"}) == ""
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["train", "--training-data-dir", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.startswith("amygdala: error: [rank 1 of 2] ")


def test_debug_lives_in_the_invocation_not_in_the_module(tmp_path: Path) -> None:
    """Regression: ``--debug`` was a module-level dict, so one debug run left every later run in debug mode."""
    with pytest.raises(AmygdalaError):
        main(["--debug", "train", "--training-data-dir", str(tmp_path / "none")])
    assert main(["train", "--training-data-dir", str(tmp_path / "none")]) == 2


def test_help_lists_the_commands_in_data_flow_order(capsys: pytest.CaptureFixture[str]) -> None:
    """Regression: sorting the command modules' import (a linter's fix) reordered ``amygdala --help``."""
    assert main(["--help"]) == 0
    listed = [line.split()[1] for line in capsys.readouterr().out.splitlines()
              if line.startswith("│ ") and len(line.split()) > 2 and line.split()[1].islower()]
    order = ["extract", "emotions", "memory-serve", "train", "eval", "readout", "serve", "demo", "bench", "export"]
    assert [name for name in listed if name in order] == order
