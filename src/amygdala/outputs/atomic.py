"""One file written whole or not at all, output checks that name the user's path, and the output lock (the
guarantees are described in ``amygdala.outputs``; ``publish`` changes a set of files as one)."""

from __future__ import annotations

import array
import errno
import fcntl
import os
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_IMMUTABLE_FL, _APPEND_FL, _FS_IOC_GETFLAGS = 0x10, 0x20, 0x80086601


class OutputError(OSError):
    """An output could not be written (full disk, read-only folder, a file where a folder must be...)."""


class OutputBusyError(OutputError):
    """Another run holds the lock of the same output."""


def _blocking_file(path: Path) -> Path | None:
    """The first parent of ``path`` that is a file (so no folder can be made there), if any."""
    return next((parent for parent in Path(path).parents if parent.is_file()), None)


def _existing_folder(path: Path) -> Path:
    """The deepest existing ancestor of ``path`` (the folder whose permissions decide whether it can be made)."""
    return next(parent for parent in Path(path).absolute().parents if parent.exists())


def _inode_flags(path: Path) -> int:
    """The file's chattr flags (0 where the file system or the platform has none)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return 0
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, flags)
        return flags[0]
    except OSError:
        return 0
    finally:
        os.close(fd)


_FIXES = {  # errno -> what to do (the reason is the system's own words, os.strerror)
    errno.EISDIR: "give a file path, or move the directory away",
    errno.EACCES: "choose a folder you can write to",
    errno.EPERM: "the file or its folder may be immutable or append-only (chattr -i / -a clears that) or not yours; "
                 "choose another path",
    errno.EROFS: "choose a writable location",
    errno.ENOSPC: "free some space or choose another location",
    errno.EDQUOT: "free some space or choose another location",
    errno.EFBIG: "the file size limit (ulimit -f) was reached; raise it or choose another location",
    errno.ENAMETOOLONG: "choose a shorter path",
}


def _reason(code: int | None) -> str:
    """The system's words for ``code`` and the fix, e.g. ``Read-only file system; choose a writable location``."""
    words = os.strerror(code) if code else "unknown error"
    return f"{words}; {_FIXES.get(code or 0, 'choose another path')}"


def output_error(path: Path, exc: OSError) -> OutputError:
    """``exc`` retold as one line naming the user's ``path``, why and the fix (no errno number, no temp names)."""
    if blocking := _blocking_file(path):
        reason = f"{blocking} is a file, not a folder; choose another path or move that file away"
    elif exc.errno == errno.ENOTDIR:
        reason = "a part of the path is a file, not a folder; choose another path"
    else:
        reason = _reason(exc.errno) if exc.errno else f"{exc.strerror or type(exc).__name__}; choose another path"
    error = OutputError(f"cannot write {path}: {reason}")
    error.errno = exc.errno
    return error


def _unwritable(folder: Path, path: Path) -> str | None:
    """Why files cannot be created in ``folder`` (to write ``path``), or None."""
    if not folder.is_dir():
        return f"cannot write {path}: {folder} is not a folder; choose another path"
    if os.access(folder, os.W_OK | os.X_OK):
        return None
    read_only = os.statvfs(folder).f_flag & os.ST_RDONLY
    code = errno.EROFS if read_only else errno.EPERM if _inode_flags(folder) & _IMMUTABLE_FL else errno.EACCES
    where = "" if Path(folder) == Path(path) else f" (its folder {folder})"
    return f"cannot write {path}{where}: {_reason(code)}"


def output_problems(path: Path) -> list[str]:
    """Why ``path`` cannot be written as a file, each naming it and the fix; ``[]`` when nothing is in the way."""
    path = Path(path)
    if blocking := _blocking_file(path):
        return [f"cannot write {path}: {blocking} is a file, not a folder; choose another path or move that file away"]
    if path.is_dir():
        return [f"cannot write {path}: it is a directory; give a file path, not a folder"]
    if problem := _unwritable(_existing_folder(path), path):
        return [problem]
    if path.is_file() and _inode_flags(path) & (_IMMUTABLE_FL | _APPEND_FL):
        return [f"cannot write {path}: the existing file is immutable or append-only (chattr); clear the attribute "
                f"(chattr -i / -a) or choose another path"]
    return []


def output_folder_problems(folder: Path) -> list[str]:
    """Why files cannot be written into ``folder`` (made beside it if new, with its lock beside it), or ``[]``."""
    folder = Path(folder)
    if blocking := _blocking_file(folder):
        return [f"cannot write {folder}: {blocking} is a file, not a folder; choose another path or move that file "
                f"away"]
    problems = [_unwritable(_existing_folder(folder), folder)]
    if folder.is_dir():
        problems.append(_unwritable(folder, folder))
    return [problem for problem in problems if problem]


def check_output_file(*paths: Path) -> None:
    """Refuse, before any work, outputs that cannot be written or that name one file twice: one error for all."""
    problems = [problem for path in paths for problem in output_problems(path)]
    resolved = [Path(path).absolute().resolve() for path in paths]
    if len(set(resolved)) < len(resolved):
        problems.append(f"outputs {', '.join(map(str, paths))} name the same file twice: give distinct paths")
    if problems:
        raise OutputError("; ".join(problems))


def check_output_path(path: Path) -> None:
    """Refuse, before any work, an output whose folder cannot be created: a parent that is a file."""
    if blocking := _blocking_file(path):
        raise OutputError(f"cannot write {path}: {blocking} is a file, not a folder; choose another path")


def sibling_name(path: Path, tag: str) -> Path:
    """A hidden name beside ``path``, unique per call: ``.<name>.<random>.<tag>``."""
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}.{tag}")


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_temp(path: Path, data: bytes) -> Path:
    """``data`` in a fresh fsynced temp file beside ``path``, with the mode (and owner, as root) of the file it
    replaces, else 0666 minus the umask."""
    temp = sibling_name(path, "tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            if path.is_file():
                old = path.stat()
                os.fchmod(out.fileno(), old.st_mode & 0o7777)
                if os.geteuid() == 0:
                    os.fchown(out.fileno(), old.st_uid, old.st_gid)
            os.fsync(out.fileno())
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write one file via a temp file beside it + rename: readers never see a partial file; on failure
    (``OutputError`` naming ``path``) the old file is untouched and no temp file is left."""
    path = Path(path)
    temp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = write_temp(path, data)
        os.replace(temp, path)
    except OSError as exc:
        raise output_error(path, exc) from exc
    finally:
        if temp is not None:
            temp.unlink(missing_ok=True)


# ---- locks ----

_held: dict[str, tuple[threading.RLock, list[int]]] = {}  # lock file -> (thread lock, [fd, depth]) in this process
_held_guard = threading.Lock()


def lock_path_for(output: Path) -> Path:
    """``.<name>.lock`` beside ``output`` (its folder resolved, so two spellings of one output share a lock)."""
    output = Path(output).absolute()
    return output.parent.resolve() / f".{output.name}.lock"


def _flock(lock: Path, output: Path, wait_s: float) -> int:
    """An fd holding ``flock`` on the lock file that is still at ``lock`` (a released lock file is unlinked)."""
    deadline = time.monotonic() + wait_s
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            if time.monotonic() >= deadline:
                raise OutputBusyError(f"another amygdala run ({holder}) is writing {output}: wait for it to "
                                      f"finish, or choose another output") from None
            time.sleep(0.05)
            continue
        try:
            current = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            try:  # who holds it, for the message a second run gets; a full disk must not stop the run
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
            except OSError:
                pass
            return fd
        os.close(fd)


@contextmanager
def output_lock(output: Path, *, wait_s: float = 0.0) -> Iterator[None]:
    """Hold the lock of ``output`` (``.<name>.lock`` beside it); a second holder is refused after ``wait_s`` with
    ``OutputBusyError`` naming the holder. Re-entrant in a process; the folder is created if missing."""
    lock = lock_path_for(output)
    with _held_guard:
        guard, state = _held.setdefault(str(lock), (threading.RLock(), [-1, 0]))
    if not (guard.acquire(timeout=wait_s) if wait_s > 0 else guard.acquire(blocking=False)):
        raise OutputBusyError(f"another thread of this process is writing {output}: wait for it to finish")
    try:
        if state[1] == 0:
            try:
                lock.parent.mkdir(parents=True, exist_ok=True)
                state[0] = _flock(lock, Path(output), wait_s)
            except OutputBusyError:
                raise
            except OSError as exc:
                raise output_error(Path(output), exc) from exc
        state[1] += 1
        try:
            yield
        finally:
            state[1] -= 1
            if state[1] == 0:
                lock.unlink(missing_ok=True)
                os.close(state[0])
    finally:
        guard.release()


__all__ = ["OutputBusyError", "OutputError", "atomic_write_bytes", "check_output_file",
           "check_output_path", "fsync_dir", "lock_path_for", "output_error", "output_folder_problems", "output_lock",
           "output_problems", "sibling_name", "write_temp"]
