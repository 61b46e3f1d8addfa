"""The independent reference, run by amygdala's MAIN interpreter (transformers >= 5.23), not the plugin's venv.

Reads ``{"model", "vectors", "manifest", "zscore", "sequences": [[token ids]]}`` (JSON file, argv[1]) and prints
``{"readouts": [[n_tokens][n_layers][n_concepts]]}``: amygdala's offline readout (``readout.read_ids``, one HF
forward pass per sequence, hooks on the decoder blocks), the function ``amygdala readout`` uses.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(request_path: str) -> None:
    from amygdala.artifact import load_artifact
    from amygdala.models import load_model
    from amygdala.readout import ReadoutOptions, read_ids

    request = json.loads(Path(request_path).read_text(encoding="utf-8"))
    loaded = load_model(request["model"])
    artifact = load_artifact(request["vectors"], request["manifest"])
    options = ReadoutOptions(zscore=bool(request["zscore"]))
    readouts = [read_ids(loaded, artifact, ids, options).tolist() for ids in request["sequences"]]
    json.dump({"readouts": readouts}, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
