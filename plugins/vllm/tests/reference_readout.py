"""The independent reference, run by amygdala's MAIN interpreter (transformers >= 5.23), not the plugin's venv.

Reads ``{"model", "vectors", "manifest", "zscore", "sequences": [[token ids]], "dtype"?, "hidden_states"?}`` (JSON
file, argv[1]) and prints ``{"readouts": [[n_tokens][n_layers][n_concepts]]}``: amygdala's offline readout
(``readout.read_ids``, one HF forward pass per sequence, hooks on the decoder blocks: the raw residual stream), the
function ``amygdala readout`` uses. ``dtype`` (default float32) is the dtype transformers runs the model in. With
``"hidden_states": true`` it also prints ``"hidden_states"``: transformers' own ``output_hidden_states[idx + 1]``
projected on the same vectors, which for the last block is taken after the model's final norm.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch


def _hidden_state_projections(loaded: Any, artifact: Any, ids: list[int]) -> list[Any]:
    with torch.no_grad():
        out = loaded.model(input_ids=torch.tensor([ids]), output_hidden_states=True)
    per_layer = [out.hidden_states[layer + 1][0].float() @ artifact.vectors[layer].float().T
                 for layer in artifact.layers]
    return torch.stack(per_layer, dim=1).tolist()


def main(request_path: str) -> None:
    from amygdala.artifact import load_artifact
    from amygdala.forward.models import load_model
    from amygdala.readout.attach import read_ids
    from amygdala.readout.projection import ReadoutOptions

    request = json.loads(Path(request_path).read_text(encoding="utf-8"))
    loaded = load_model(request["model"], dtype=request.get("dtype", "float32"))
    artifact = load_artifact(request["vectors"], request["manifest"])
    options = ReadoutOptions(zscore=bool(request["zscore"]))
    result: dict[str, Any] = {"readouts": [read_ids(loaded, artifact, ids, options).tolist()
                                           for ids in request["sequences"]]}
    if request.get("hidden_states"):
        result["hidden_states"] = [_hidden_state_projections(loaded, artifact, ids) for ids in request["sequences"]]
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
