"""The import graph of a package, read from its source: every ``import`` / ``from`` naming the package is an edge,
those under ``TYPE_CHECKING`` and inside functions included (a lazy import still closes a loop)."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path


def module_files(src: Path, package: str) -> dict[str, Path]:
    """``{dotted module name: file}`` for every module of ``package`` under ``src``."""
    modules = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imported_names(module: str, path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: anchored at the module's package
                anchor = module.split(".")[: -1 if path.name != "__init__.py" else None]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names += [base, *(f"{base}.{alias.name}" for alias in node.names)]
    return names


def import_graph(src: Path, package: str) -> dict[str, set[str]]:
    """``{module: modules it imports}``; a name imported from a module resolves to that module, and a submodule
    importing its own package is no edge (the package's ``__init__`` runs first by definition)."""
    modules = module_files(src, package)

    def resolve(name: str) -> str | None:
        parts = name.split(".")
        while parts and ".".join(parts) not in modules:
            parts.pop()
        return ".".join(parts) or None

    graph: dict[str, set[str]] = {module: set() for module in modules}
    for module, path in modules.items():
        for name in _imported_names(module, path):
            target = resolve(name) if name.split(".")[0] == package else None
            if target and target != module and not module.startswith(target + "."):
                graph[module].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (its modules, first repeated last), or None."""
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as error:
        return list(error.args[1])
    return None
