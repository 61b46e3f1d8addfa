"""The battery's data files: the bundled JSONL under ``amygdala/data`` and a user's own, read line by line with
every bad line named (file, line, fix) in one ``CheckError``."""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from amygdala.errors import listed
from amygdala.evaluation.checks.options import CheckError

Row = dict[str, Any]
#: A row's problems (empty when it is usable); the reader prefixes each with the file and line.
Validator = Callable[[Row], list[str]]


def bundled_text(name: str) -> str:
    return resources.files("amygdala").joinpath("data", name).read_text(encoding="utf-8")


def read_text_file(path: Path, what: str) -> str:
    """The file's text; a file that is not UTF-8 text (or holds NUL bytes) is one ``CheckError`` naming it."""
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckError(f"{what} {path} is not text (byte {exc.start} is not UTF-8): give UTF-8 text, one item "
                         "per line") from None
    if "\x00" in text:
        raise CheckError(f"{what} {path} is not text (it holds NUL bytes at {text.index(chr(0))}): give UTF-8 "
                         "text, one item per line")
    return text


def parse_rows(text: str, source: str, validate: Validator) -> list[Row]:
    """Each non-blank line of ``text`` as a JSON object that ``validate`` accepts; every bad line is named."""
    rows, problems = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{source} line {number}: not JSON ({exc.msg})")
            continue
        if not isinstance(row, dict):
            problems.append(f"{source} line {number}: not a JSON object")
            continue
        found = validate(row)
        problems += [f"{source} line {number}: {problem}" for problem in found]
        if not found:
            rows.append(row)
    if problems:
        raise CheckError(listed(problems))
    return rows


def read_rows(bundled: str, extra: Path | None, what: str, validate: Validator) -> list[Row]:
    """The bundled file's rows, then those of the user's ``extra`` file (if any)."""
    rows = parse_rows(bundled_text(bundled), f"bundled {bundled}", validate)
    if extra is not None:
        rows += parse_rows(read_text_file(extra, what), str(extra), validate)
    return rows


def string_field(row: Row, key: str) -> list[str]:
    value = row.get(key)
    return [] if isinstance(value, str) and value.strip() else [f"'{key}' must be a non-empty string"]
