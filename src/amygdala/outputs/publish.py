"""Publishing a set of files as one: the complete new set or the complete old set, also after a failed rename or
a crash. The steps and the guarantee are described in ``amygdala.outputs.atomic``; this module holds the mechanics.

Names beside each target while a publish runs (all hidden, all removed at the end): ``.<name>.<hex>.tmp`` (new
bytes), ``.<name>.<hex>.old`` (hard-link backup of the old file), and beside the anchor ``.<anchor>.publish``
(the journal) and ``.<anchor>.lock``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from amygdala.outputs.atomic import (
    OutputError,
    atomic_write_bytes,
    check_output_file,
    fsync_dir,
    output_error,
    output_lock,
    sibling_name,
    write_temp,
)

JOURNAL_FORMAT = "amygdala-publish/1"
_PUBLISH_WAIT_S = 30.0
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{12}\.(old|tmp)$")


@dataclass(frozen=True)
class _Entry:
    """One target of a publish: the temp file with its new bytes (None: the target is removed) and the name of
    the hard-link backup of the file it replaces (None: there was none)."""

    target: Path
    temp: Path | None
    backup: Path | None

    def to_json(self) -> dict[str, str | None]:
        def absolute(path: Path | None) -> str | None:
            return None if path is None else str(path.absolute())

        return {"target": str(self.target.absolute()), "temp": absolute(self.temp), "backup": absolute(self.backup)}


def journal_path_for(anchor: Path) -> Path:
    anchor = Path(anchor).absolute()
    return anchor.with_name(f".{anchor.name}.publish")


def _folders(entries: Iterable[_Entry]) -> set[Path]:
    return {entry.target.parent for entry in entries}


def _same_file(first: Path, second: Path) -> bool:
    try:
        a, b = os.lstat(first), os.lstat(second)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _restore(entry: _Entry) -> None:
    if entry.backup is not None and os.path.lexists(entry.backup):
        if _same_file(entry.backup, entry.target):  # not replaced yet; rename() between links does nothing
            entry.backup.unlink()
        else:
            os.replace(entry.backup, entry.target)
    elif entry.backup is None and entry.temp is not None and not entry.temp.exists():
        entry.target.unlink(missing_ok=True)  # its temp was renamed into place: the file is new
    if entry.temp is not None:
        entry.temp.unlink(missing_ok=True)


def _roll_back(entries: Iterable[_Entry]) -> list[str]:
    """Put back every old file from its backup and remove every new file that had no predecessor. Best effort
    per file: returns what could not be undone (the old bytes then wait under the backup's name)."""
    failed = []
    for entry in entries:
        try:
            _restore(entry)
        except OSError as exc:
            if entry.backup is not None and os.path.lexists(entry.backup) and not _same_file(entry.backup,
                                                                                             entry.target):
                failed.append(f"could not put back {entry.target} ({exc.strerror}); its old bytes are in "
                              f"{entry.backup}")
    for folder in _folders(entries):
        with suppress(OSError):
            fsync_dir(folder)
    return failed


def _stage(changes: Mapping[Path, bytes | None], shown: Path | None) -> list[_Entry]:
    """Write each new file's temp beside its target; name a backup for each file that exists."""
    entries: list[_Entry] = []
    try:
        for target, data in changes.items():
            exists = os.path.lexists(target)
            if data is None and not exists:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            temp = None if data is None else write_temp(target, data)
            backup = sibling_name(target, "old") if exists else None
            entries.append(_Entry(target, temp, backup))
    except OSError as exc:
        _roll_back(entries)  # only temps so far: nothing to put back
        raise output_error(shown or target, exc) from exc
    return entries


def _commit(entries: list[_Entry]) -> None:
    """Back up every old file (hard links), then rename every temp into place (or remove the target)."""
    for entry in entries:
        if entry.backup is not None:
            os.link(entry.target, entry.backup, follow_symlinks=False)
    for folder in _folders(entries):
        fsync_dir(folder)
    for entry in entries:
        if entry.temp is not None:
            os.replace(entry.temp, entry.target)
        else:
            entry.target.unlink()
    for folder in _folders(entries):
        fsync_dir(folder)


def _failing_target(entries: list[_Entry], exc: OSError) -> Path:
    """The target an error is about (``exc.filename`` may be a temp or backup name)."""
    named = {str(path): entry.target for entry in entries for path in (entry.target, entry.temp, entry.backup) if path}
    found = [named[str(name)] for name in (exc.filename, exc.filename2) if str(name) in named]
    return found[0] if found else entries[0].target


def _remove_leftovers(targets: Iterable[Path]) -> None:
    """Temps and backups a crash or a refused cleanup left beside the targets (made only under the lock, so stale
    now; a journal, if any, was already rolled back)."""
    for target in targets:
        if target.parent.is_dir():
            for leftover in target.parent.glob(f".{target.name}.*"):
                if (match := _LEFTOVER.match(leftover.name)) and match["name"] == target.name:
                    leftover.unlink(missing_ok=True)


def _undo(entries: list[_Entry], journal: Path, exc: BaseException, shown: Path | None) -> BaseException:
    """Roll back after ``exc``; returns the exception to raise: one line naming the user's path, and saying
    whether the earlier files are unchanged (the journal stays when a file could not be put back)."""
    failed = _roll_back(entries)
    if not failed:
        journal.unlink(missing_ok=True)
    if not isinstance(exc, OSError):
        return exc  # KeyboardInterrupt and the like go on as they are
    message = exc if isinstance(exc, OutputError) else output_error(shown or _failing_target(entries, exc), exc)
    return OutputError(f"{message}; {'; '.join(failed) or 'the earlier files are unchanged'}")


def publish_files(changes: Mapping[Path, bytes | None], *, anchor: Path | None = None,
                  shown: Path | None = None) -> None:
    """Replace every target with its bytes (``None``: remove it) as one set, in the given order; see
    ``amygdala.outputs.atomic`` for the guarantee. ``anchor`` (default: the first target) names the lock and journal;
    errors name ``shown`` (e.g. the output dir the user gave), else the target that failed."""
    changes = {Path(path): data for path, data in changes.items()}
    if not changes:
        return
    anchor = Path(anchor) if anchor is not None else next(iter(changes))
    check_output_file(*changes)
    with output_lock(anchor, wait_s=_PUBLISH_WAIT_S):
        recover_interrupted(anchor)
        _remove_leftovers(changes)
        entries = _stage(changes, shown)
        journal = journal_path_for(anchor)
        try:
            atomic_write_bytes(journal, json.dumps({"format": JOURNAL_FORMAT,
                                                    "entries": [e.to_json() for e in entries]}).encode())
            fsync_dir(journal.parent)
            _commit(entries)
        except BaseException as exc:
            error = _undo(entries, journal, exc, shown)
            if error is exc:
                raise
            raise error from exc
        journal.unlink()  # the commit point: from here on the new set stands
        fsync_dir(journal.parent)
        for entry in entries:  # best effort: a backup left here is removed by the next publish
            if entry.backup is not None:
                with suppress(OSError):
                    entry.backup.unlink(missing_ok=True)


def _read_journal(journal: Path) -> list[_Entry]:
    try:
        rows = json.loads(journal.read_text(encoding="utf-8"))["entries"]
        return [_Entry(Path(row["target"]), row["temp"] and Path(row["temp"]), row["backup"] and Path(row["backup"]))
                for row in rows]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OutputError(f"the journal {journal} of an interrupted publish is unreadable ({exc}): check the files "
                          f"beside it by hand, then delete it") from None


def recover_interrupted(anchor: Path) -> bool:
    """Undo a publish that a crash interrupted (its journal is left beside ``anchor``): the complete old set comes
    back. Returns whether there was one. Waits for a publish still running in another process."""
    journal = journal_path_for(anchor)
    if not journal.exists():
        return False
    with output_lock(anchor, wait_s=_PUBLISH_WAIT_S):
        if not journal.exists():  # the publish we waited for finished
            return False
        if failed := _roll_back(_read_journal(journal)):
            raise OutputError(f"an interrupted publish beside {anchor} cannot be undone: {'; '.join(failed)}")
        journal.unlink()
        fsync_dir(journal.parent)
    return True


__all__ = ["JOURNAL_FORMAT", "journal_path_for", "publish_files", "recover_interrupted"]
