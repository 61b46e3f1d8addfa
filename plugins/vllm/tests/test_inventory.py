"""Every vLLM internal INTERNALS.md lists exists at the pinned vLLM: a vLLM upgrade that moves one fails by name."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from typing import Any

import pytest

INTERNALS = Path(__file__).resolve().parents[1] / "INTERNALS.md"
_ROW = re.compile(r"^\| `([\w.]+)` \| `([\w.]+)` \| ([a-z ]+) \|$")
KINDS = ("module", "class", "function", "method", "property", "attribute", "instance attribute", "env var")


def inventory() -> list[tuple[str, str, str]]:
    """The rows of INTERNALS.md's inventory table: ``(module, name, kind)``."""
    text = INTERNALS.read_text(encoding="utf-8")
    section = text.split("## Inventory", 1)[1].split("\n## ", 1)[0]
    return [match.groups() for line in section.splitlines() if (match := _ROW.match(line.strip()))]  # type: ignore[misc]


def _assigned_on_self(cls: type, name: str) -> bool:
    """``self.<name> = ...`` (or annotated) in the source of ``cls`` or one of its bases."""
    pattern = re.compile(rf"\bself\.{re.escape(name)}\s*(:[^=\n]+)?=(?!=)")
    for base in inspect.getmro(cls):
        if base is object:
            continue
        try:
            source = inspect.getsource(base)
        except (OSError, TypeError):
            continue
        if pattern.search(source):
            return True
    return False


def check(module_name: str, name: str, kind: str) -> str | None:
    """``None`` when the internal is there as ``kind``; else what is wrong."""
    module = importlib.import_module(module_name)
    if kind == "env var":
        return None if name in module.environment_variables else f"{name} is not a vLLM env var"
    *owner_path, leaf = name.split(".")
    owner: Any = module
    for part in owner_path:
        owner = getattr(owner, part, None)
        if owner is None:
            return f"{module_name} has no {part}"
    found = inspect.getattr_static(owner, leaf, None) if inspect.isclass(owner) else getattr(owner, leaf, None)
    fields = getattr(owner, "__dataclass_fields__", {})
    if kind == "instance attribute":
        ok = leaf in fields or (inspect.isclass(owner) and _assigned_on_self(owner, leaf))
    elif kind == "attribute":
        ok = found is not None or leaf in fields
    elif kind == "property":
        ok = isinstance(found, property)
    elif kind == "method":
        ok = callable(getattr(owner, leaf, None))
    elif kind == "class":
        ok = inspect.isclass(found)
    elif kind == "function":
        ok = inspect.isfunction(found) or inspect.isbuiltin(found)
    else:
        ok = inspect.ismodule(found)
    return None if ok else f"{module_name}.{name} is not there as a {kind}"


def test_inventory_table_is_read_and_names_known_kinds() -> None:
    rows = inventory()
    assert len(rows) >= 40, "INTERNALS.md's inventory table was not found or lost rows"
    assert {kind for _, _, kind in rows} <= set(KINDS)


@pytest.mark.parametrize(("module_name", "name", "kind"), inventory(), ids=lambda value: str(value))
def test_vllm_internal_exists_at_the_pinned_version(module_name: str, name: str, kind: str) -> None:
    from amygdala_vllm.vision_imports import answer_without_torchvision

    answer_without_torchvision()  # vLLM's Qwen3.5 module imports only with torchvision or the plugin's answer
    assert check(module_name, name, kind) is None, check(module_name, name, kind)


def test_inventory_check_fails_on_a_moved_internal() -> None:
    """The check can fail: a method vLLM does not have, a field under the wrong kind."""
    assert check("vllm.v1.worker.gpu_model_runner", "GPUModelRunner.no_such_method", "method") is not None
    assert check("vllm.v1.worker.gpu_input_batch", "InputBatch.req_ids", "instance attribute") is not None
    assert check("vllm.envs", "VLLM_NO_SUCH_VARIABLE", "env var") is not None
