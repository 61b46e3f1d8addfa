"""Atomic outputs: a file appears whole or not at all, and a failed write names its target and leaves no temp."""

from __future__ import annotations

from pathlib import Path

import pytest

from amygdala.outputs import OutputError, atomic_write_bytes, atomic_write_files, check_output_path


def test_atomic_write_bytes_creates_folders_and_replaces_the_file(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.json"
    atomic_write_bytes(target, b"first")
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second" and sorted(p.name for p in target.parent.iterdir()) == ["out.json"]


def test_atomic_write_files_writes_none_when_one_cannot_be_written(tmp_path: Path) -> None:
    (tmp_path / "kept.txt").write_bytes(b"earlier")
    (tmp_path / "blocker").write_bytes(b"a file where a folder must be")
    with pytest.raises(OutputError, match=r"cannot write .*blocker/x.txt: .*blocker is a file, not a folder"):
        atomic_write_files({tmp_path / "kept.txt": b"new", tmp_path / "blocker" / "x.txt": b"x"})
    assert (tmp_path / "kept.txt").read_bytes() == b"earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "kept.txt"], "no temp file is left behind"


def test_check_output_path_refuses_a_path_under_a_file_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    check_output_path(tmp_path / "new" / "out.bin")
    with pytest.raises(OutputError, match="is a file, not a folder") as caught:
        check_output_path(tmp_path / "file" / "out.bin")
    assert isinstance(caught.value, OSError)
