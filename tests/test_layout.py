"""The package's layout: one package per stage, no import cycle (hidden ones included), small modules."""

from __future__ import annotations

from pathlib import Path

from import_graph import find_cycle, import_graph, module_files

SRC = Path(__file__).resolve().parents[1] / "src"
STAGES = ("extraction", "synthesis", "forward", "training", "evaluation", "readout", "serve", "watch")


def test_import_graph_has_no_cycle() -> None:
    """Regression: four cycles hid behind TYPE_CHECKING and function-level imports (pooling <-> activation_cache,
    directions <-> neutral/shrinkage, outputs <-> publish, watch.session <-> watch.terminal)."""
    assert find_cycle(import_graph(SRC, "amygdala")) is None


def test_import_graph_counts_type_checking_and_function_level_imports(tmp_path: Path) -> None:
    package = tmp_path / "planted"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from planted.b import B\n")
    (package / "b.py").write_text("def load():\n    from planted import a\n    return a\n")
    (package / "c.py").write_text("from . import a\n")
    graph = import_graph(tmp_path, "planted")
    assert graph["planted.a"] == {"planted.b"} and graph["planted.b"] == {"planted.a"}
    assert graph["planted.c"] == {"planted.a"}, "a relative import is an edge too"
    assert sorted(set(find_cycle(graph) or [])) == ["planted.a", "planted.b"]


def test_every_stage_is_a_package_and_few_modules_sit_at_the_top() -> None:
    modules = module_files(SRC, "amygdala")
    assert all(f"amygdala.{stage}" in modules and modules[f"amygdala.{stage}"].name == "__init__.py"
               for stage in STAGES)
    top = sorted(name for name, path in modules.items() if name.count(".") == 1 and path.name != "__init__.py")
    assert top == ["amygdala.demo", "amygdala.errors", "amygdala.pipeline"]


def test_no_module_is_over_300_lines() -> None:
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines())
             for name, path in module_files(SRC, "amygdala").items()}
    assert {name: size for name, size in sizes.items() if size > 300} == {}
