"""The JSON that amygdala's servers send, built once: the readout manifest, the OpenAI-shaped error body, and the
one strict encoder every body and SSE event goes through (``amygdala serve``, ``memory-serve``'s refusals, and
the vLLM plugin, whose venv installs amygdala without its dependencies: so this module imports the stdlib only).

One NaN/Infinity rule everywhere: strict JSON (RFC 8259) has no ``NaN`` or ``Infinity``, so a non-finite number
(an fp16 overflow, a z-score over a tiny std) is sent as ``null``, never as the invalid tokens ``json.dumps``
writes by default, and never as a 500 from a framework that refuses them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

#: ``layer_<idx>`` -> ``{"mean": [...], "std": [...]}``, one value per concept (``artifact.calibration_json``).
CalibrationTable = Mapping[str, Mapping[str, Sequence[float]]]
#: The ``error.code`` of ``GET /v1/readout/manifest`` on a server that reads nothing out (a 404).
NO_READOUT_CODE = "no_readout"


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinity, however deeply nested in dicts, lists and tuples, as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


def strict_json(payload: Any) -> str:
    """``payload`` as strict JSON: a non-finite number becomes ``null``. The fast path encodes once; only a
    payload that holds one is walked."""
    try:
        return json.dumps(payload, allow_nan=False)
    except ValueError:
        return json.dumps(finite(payload), allow_nan=False)


def sse_line(payload: Mapping[str, Any] | str) -> str:
    """One server-sent event: ``data: <strict JSON>`` (or the literal, e.g. ``[DONE]``) and the blank line."""
    return f"data: {payload if isinstance(payload, str) else strict_json(payload)}\n\n"


def error_body(message: str, *, kind: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape, ``{"error": {"message", "type", "param", "code"}}``, on every server."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def manifest_payload(concepts: Sequence[str], layers: Sequence[int], *, hidden_size: int,
                     calibration: CalibrationTable | None, zscore: bool = False) -> dict[str, Any]:
    """The body of ``GET /v1/readout/manifest``, the same on every server:

    - ``concepts``, ``layers``: the order of every readout's ``[n_layers][n_concepts]``;
    - ``hidden_size``: the model's residual width the vectors fit;
    - ``calibrated``: whether ``calibration`` is given;
    - ``calibration`` (only when calibrated): ``layer_<idx>: {mean, std}``, so a client can z-score raw readouts;
    - ``zscore``: the readouts arrive z-scored already (the vLLM plugin with ``AMYGDALA_VLLM_ZSCORE=1``).
    """
    payload: dict[str, Any] = {"concepts": list(concepts), "layers": list(layers), "hidden_size": hidden_size,
                               "calibrated": calibration is not None, "zscore": zscore}
    if calibration is not None:
        payload["calibration"] = {layer: {name: list(values) for name, values in table.items()}
                                  for layer, table in calibration.items()}
    return payload


__all__ = ["NO_READOUT_CODE", "CalibrationTable", "error_body", "finite", "manifest_payload", "sse_line",
           "strict_json"]
