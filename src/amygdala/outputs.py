"""Atomic outputs: every file amygdala writes appears whole or not at all, and a failed write names its target.

``atomic_write_files`` writes each file to a temp file beside it (fsynced) and renames them into place only once
all are written, so a full disk or an unwritable folder leaves earlier outputs byte-identical and no temp file
behind. Errors become ``OutputError`` (an ``OSError``): one line naming the output and the cause.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class OutputError(OSError):
    """An output could not be written (full disk, read-only folder, a file where a folder must be...)."""


def _blocking_file(path: Path) -> Path | None:
    """The first parent of ``path`` that is a file (so no folder can be made there), if any."""
    return next((parent for parent in Path(path).parents if parent.is_file()), None)


def _output_error(path: Path, exc: OSError) -> OutputError:
    """``exc`` retold as one line naming ``path``; a parent that is a file is named as such."""
    blocking = _blocking_file(path)
    reason = f"{blocking} is a file, not a folder" if blocking else exc.strerror or str(exc)
    error = OutputError(f"cannot write {path}: {reason}")
    error.errno = exc.errno
    return error


def atomic_write_files(files: dict[Path, bytes]) -> None:
    """Write every file to a temp file beside it (fsynced), then rename each into place in the given order.

    A failure while writing (full disk, read-only folder) leaves every target untouched and no temp file behind;
    it raises ``OutputError`` naming the target.
    """
    temps: dict[Path, str] = {}
    try:
        for path, data in ((Path(path), data) for path, data in files.items()):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                handle, temps[path] = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
                with os.fdopen(handle, "wb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
            except OSError as exc:
                raise _output_error(path, exc) from exc
        for path, temp in temps.items():
            os.replace(temp, path)
    finally:
        for temp in temps.values():
            Path(temp).unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder + rename, so readers never see a partial file."""
    atomic_write_files({Path(path): data})


def check_output_path(path: Path) -> None:
    """Refuse, before any work, an output whose folder cannot be created: a parent that is a file."""
    if blocking := _blocking_file(path):
        raise OutputError(f"cannot write {path}: {blocking} is a file, not a folder")


__all__ = ["OutputError", "atomic_write_bytes", "atomic_write_files", "check_output_path"]
