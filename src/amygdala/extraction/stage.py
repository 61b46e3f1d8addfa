"""``amygdala extract``: memory nodes -> an examples dir, one ``<emotion>.jsonl`` per emotion plus ``extract.json``.

``selection.select_examples`` chooses the emotions and their capped, deterministic examples (rules in
``examples``); ``write_extract`` writes them as one set, under the output's lock: a new dir is staged beside the
output and renamed into place; an existing one gets the complete new set or keeps the complete old one
(``publish``). ``extract`` is the two composed; ``extract_from`` reads a ``MemorySource`` first. A non-empty
output dir is refused unless ``force``; with ``force`` only amygdala's own files there are replaced (and those a
previous extract listed, removed), never unrelated files.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from amygdala.extraction.examples import SPLITS, ExamplesError
from amygdala.extraction.scoring import ExtractOptions
from amygdala.extraction.selection import (
    EmotionCandidates,
    Selection,
    cap_sizes,
    choose_emotions,
    emotion_examples,
    select_examples,
)
from amygdala.extraction.sources import LogCounts, MemoryGraph, MemoryNode, MemorySource, read_memory
from amygdala.outputs.atomic import OutputError, fsync_dir, output_error, output_folder_problems, output_lock
from amygdala.outputs.publish import publish_files, recover_interrupted

MANIFEST = "extract.json"
MANIFEST_FORMAT = "amygdala-extract/1"
_EMOTION_FILE = re.compile(r"^[a-z0-9_]+\.jsonl$")


@dataclass(frozen=True)
class ExtractResult:
    """What ``extract`` wrote: the output dir, the file names (emotion files, then the manifest) and the selection."""

    output_dir: Path
    source: str
    files: tuple[str, ...]
    selection: Selection


def _node_counts(selection: Selection) -> dict[str, int]:
    graph = selection.graph
    return {"total": graph.n_nodes, "usable": len(graph.nodes),
            **{split: sum(1 for node in graph.nodes if node.split == split) for split in SPLITS},
            "untagged": graph.n_untagged, "untagged_used": selection.untagged_used()}


def extract_manifest(selection: Selection, options: ExtractOptions, source: str) -> dict[str, object]:
    """The content of ``extract.json``: parameters, source, counts and every skipped node, tag and emotion."""
    graph = selection.graph
    return {
        "format": MANIFEST_FORMAT,
        "source": source,
        "parameters": options.to_json(),
        "files": [f"{emotion}.jsonl" for emotion in selection.emotions],
        "emotions": list(selection.emotions),
        "log": vars(selection.log or LogCounts(graph.n_nodes, kept=graph.n_nodes)),
        "unknown_fields": list(selection.unknown_fields),
        "nodes": _node_counts(selection),
        "counts": selection.counts(),
        "candidates": {emotion: vars(selection.candidates[emotion]) for emotion in selection.emotions},
        "skipped_emotions": [{"emotion": s.key, "reason": s.reason} for s in selection.skipped_emotions],
        "skipped_nodes": [{"key": s.key, "reason": s.reason} for s in graph.skipped_nodes],
        "skipped_tags": [{"key": s.key, "token": s.token, "reason": s.reason} for s in graph.skipped_tags],
    }


def render_files(selection: Selection, manifest: Mapping[str, object]) -> dict[str, bytes]:
    """File name -> exact bytes: one JSON line per example, then ``extract.json`` (last, so it is written last)."""
    files = {f"{emotion}.jsonl": "".join(example.to_json() + "\n" for example in selection.examples[emotion])
             for emotion in selection.emotions}
    files[MANIFEST] = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    return {name: text.encode("utf-8") for name, text in files.items()}


def check_output_dir(output_dir: Path, force: bool, names: tuple[str, ...] = ()) -> None:
    """Refuse a file, a broken link, a folder that cannot be written, a non-empty dir (unless ``force``), or a
    dir holding a directory where a file must go. A symlink to a directory is a directory (written through)."""
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ExamplesError(f"output dir {output_dir} is a file: give a new or empty directory")
    if output_dir.is_symlink() and not output_dir.exists():
        raise ExamplesError(f"output dir {output_dir} is a broken symlink: point it at a directory or remove it")
    if problems := output_folder_problems(output_dir):
        raise OutputError("; ".join(problems))
    present = sorted(entry.name for entry in output_dir.iterdir()) if output_dir.is_dir() else []
    if present and not force:
        shown = ", ".join(present[:3]) + (", ..." if len(present) > 3 else "")
        raise ExamplesError(f"output dir {output_dir} already holds {len(present)} entries ({shown}): give a new or "
                            f"empty dir, or pass --force to replace amygdala's files there (other files are kept)")
    blocked = [name for name in names if (output_dir / name).is_dir()]
    if blocked:
        raise ExamplesError(f"output dir {output_dir} has directories named {', '.join(blocked)}: move them away")


def _previously_written(output_dir: Path) -> set[str]:
    """Emotion files listed by an earlier ``extract.json`` in ``output_dir`` (only plain ``<name>.jsonl`` names)."""
    try:
        listed = json.loads((output_dir / MANIFEST).read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError, AttributeError):
        return set()
    return {name for name in listed if isinstance(name, str) and _EMOTION_FILE.match(name)}


def _remove_stale_staging(folder: Path) -> None:
    """Staging dirs a killed extract left beside ``folder`` (only ever made under its lock, so stale now)."""
    for leftover in folder.parent.glob(f".{folder.name}.staging-*"):
        if re.fullmatch(rf"\.{re.escape(folder.name)}\.staging-[0-9a-f]{{12}}", leftover.name):
            shutil.rmtree(leftover, ignore_errors=True)


def _create_dir(folder: Path, files: Mapping[str, bytes], shown: Path) -> None:
    """A new dir with ``files``, staged beside it and renamed into place: it appears whole or not at all."""
    staging = folder.parent / f".{folder.name}.staging-{secrets.token_hex(6)}"
    try:
        staging.mkdir(parents=True)
        for name, data in files.items():
            with (staging / name).open("wb") as out:
                out.write(data)
                os.fsync(out.fileno())
        fsync_dir(staging)
        if folder.exists():  # made by someone else since the check: never replace it
            raise FileExistsError(errno.EEXIST, "created meanwhile", str(folder))
        os.rename(staging, folder)
        fsync_dir(folder.parent)
    except OSError as exc:
        raise output_error(shown, exc) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_files_atomically(output_dir: Path, files: Mapping[str, bytes], force: bool = False) -> None:
    """Write ``files`` (``extract.json`` last) into ``output_dir`` as one set, under the output's lock (a concurrent
    extract into the same dir is refused). A new dir is staged beside it and appears with one rename. Into an
    existing dir (empty, or with ``force``) the files, and the removal of stale ones an earlier ``extract.json``
    listed, are published by ``publish.publish_files``: the complete new set or the complete old set, and the
    dir itself (mode, owner) is kept. A symlink to a dir is written through."""
    output_dir = Path(output_dir)
    folder = output_dir.resolve() if output_dir.is_symlink() else output_dir
    with output_lock(folder):
        recover_interrupted(folder)
        _remove_stale_staging(folder)
        check_output_dir(output_dir, force, tuple(files))
        if not folder.is_dir():
            _create_dir(folder, files, output_dir)
            return
        stale = _previously_written(folder) - set(files)
        changes: dict[Path, bytes | None] = {folder / name: data for name, data in files.items()}
        publish_files(changes | {folder / name: None for name in sorted(stale)}, anchor=folder, shown=output_dir)


def write_extract(selection: Selection, options: ExtractOptions, output_dir: Path | str, source: str,
                  force: bool = False) -> ExtractResult:
    """Write a selection as an examples dir (``<emotion>.jsonl`` files and ``extract.json``), atomically."""
    files = render_files(selection, extract_manifest(selection, options, source))
    write_files_atomically(Path(output_dir), files, force)
    return ExtractResult(Path(output_dir), source, tuple(files), selection)


def extract(nodes: MemoryGraph | Sequence[MemoryNode], options: ExtractOptions, output_dir: Path | str,
            source_description: str | None = None, force: bool = False) -> ExtractResult:
    """Memory nodes -> examples dir: check the output dir, select the examples, write them atomically."""
    check_output_dir(Path(output_dir), force)
    source = source_description or (nodes.source if isinstance(nodes, MemoryGraph) else "the memory graph")
    selection = select_examples(nodes, options, source)
    return write_extract(selection, options, output_dir, source, force)


def extract_from(source: MemorySource, options: ExtractOptions, output_dir: Path | str,
                 force: bool = False) -> ExtractResult:
    """``amygdala extract``: check the options, the source and the output dir (reading a server may be slow),
    then read the source and extract it."""
    options.check()
    source.check()
    check_output_dir(Path(output_dir), force)
    return extract(read_memory(source), options, output_dir, force=force)


__all__ = ["MANIFEST", "EmotionCandidates", "ExtractResult", "Selection", "cap_sizes", "check_output_dir",
           "choose_emotions", "emotion_examples", "extract", "extract_from", "extract_manifest", "render_files",
           "select_examples", "write_extract", "write_files_atomically"]
