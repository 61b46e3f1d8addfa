"""The servers' JSON (``web.payloads``): one strict encoder (NaN and infinities as null), one error body, one
manifest, in a module the vLLM plugin's venv can import (stdlib only)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import amygdala
from amygdala.web.payloads import error_body, finite, manifest_payload, sse_line, strict_json

SRC = Path(amygdala.__file__).resolve().parents[1]


def strict_loads(text: str) -> Any:
    """``json.loads`` that refuses the non-standard ``NaN``/``Infinity`` tokens, as browsers and RFC 8259 do."""
    def refuse(token: str) -> None:
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_strict_json_writes_null_for_every_non_finite_number(bad: float) -> None:
    payload = {"readout": [[1.0, bad], (bad, 2)], "nested": {"z": bad, "ok": "NaN"}, "n": 3}
    assert strict_loads(strict_json(payload)) == {"readout": [[1.0, None], [None, 2]], "nested": {"z": None,
                                                  "ok": "NaN"}, "n": 3}
    assert strict_loads(sse_line(payload).removeprefix("data: ")) == strict_loads(strict_json(payload))
    assert sse_line(payload).endswith("}\n\n") and sse_line("[DONE]") == "data: [DONE]\n\n"


def test_strict_json_leaves_a_finite_payload_as_json_dumps_writes_it() -> None:
    payload = {"a": [1.5, -0.0, 1e308], "b": None, "c": True, "d": "ü"}
    assert strict_json(payload) == json.dumps(payload) and finite(payload) == payload


def test_error_body_is_openais_shape() -> None:
    assert error_body("no", code="x") == {"error": {"message": "no", "type": "invalid_request_error", "param": None,
                                                    "code": "x"}}


def test_manifest_payload_has_every_field_of_both_servers() -> None:
    """Regression: ``amygdala serve`` sent hidden_size/calibrated/calibration and the vLLM plugin sent zscore; a
    client of one server missed the other's fields."""
    table = {"layer_3": {"mean": (0.5, math.nan), "std": [1.0, 2.0]}}
    calibrated = manifest_payload(("joy", "fear"), (3,), hidden_size=64, calibration=table, zscore=True)
    assert strict_loads(strict_json(calibrated)) == {
        "concepts": ["joy", "fear"], "layers": [3], "hidden_size": 64, "calibrated": True, "zscore": True,
        "calibration": {"layer_3": {"mean": [0.5, None], "std": [1.0, 2.0]}}}
    bare = manifest_payload(["joy"], [3], hidden_size=64, calibration=None)
    assert bare == {"concepts": ["joy"], "layers": [3], "hidden_size": 64, "calibrated": False, "zscore": False}


def test_payloads_auth_and_sanitise_import_the_standard_library_only() -> None:
    """The vLLM plugin's venv installs amygdala with --no-deps: these modules must load on the stdlib alone."""
    code = ("import sys\n"
            f"sys.path.insert(0, {str(SRC)!r})\n"
            "import amygdala.web.payloads, amygdala.web.auth, amygdala.outputs.sanitise, amygdala.forward.launcher\n"
            "loaded = {name.split('.')[0] for name in sys.modules} - set(sys.stdlib_module_names) - {'amygdala', '__main__'}\n"
            "assert not loaded, sorted(loaded)")
    done = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
