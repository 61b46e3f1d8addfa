"""The exception hierarchy: every stage error is an ``AmygdalaError`` (and still a ``ValueError``)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import amygdala
from amygdala.errors import AmygdalaError


def _error_classes() -> dict[str, type[BaseException]]:
    """Every ``*Error`` class defined in the package (the HTTP-level ones excepted: they are answers, not inputs)."""
    found = {}
    for module in pkgutil.walk_packages(amygdala.__path__, "amygdala."):
        if module.name.endswith("__main__"):
            continue
        for name, value in inspect.getmembers(importlib.import_module(module.name), inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == module.name and name.endswith("Error"):
                found[f"{module.name}.{name}"] = value
    return found


def test_every_stage_error_is_an_amygdala_error_and_a_value_error() -> None:
    classes = _error_classes()
    # HTTP answers, not caller input (a full engine queue is the server's 429)
    answers = {"amygdala.serve.schemas.APIError", "amygdala.serve.client.ServerError", "amygdala.serve.engine.QueueFullError"}
    # an OSError naming the file (or the output another run is writing): the table's OSError row
    files = {"amygdala.outputs.atomic.OutputError", "amygdala.outputs.atomic.OutputBusyError"}
    assert len(classes) >= 15
    for name, kind in classes.items():
        if name not in answers | files:
            assert issubclass(kind, AmygdalaError) and issubclass(kind, ValueError), name
