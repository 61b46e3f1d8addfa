"""Shared by the readout, serve and CLI readout tests: a small real artifact built straight from model activations.

The vectors are diff-of-means directions of a few short contrasting texts, read from HF
``output_hidden_states`` (``hidden_states[layer + 1]``, the residual after decoder block ``layer``; no amygdala
capture code is involved, so the readout tests compare amygdala against an independent reference), normalised per
layer; the calibration is the mean and std of each concept's projection over the same texts. Built once per model
and cached for the session. The layers are never a model's last block, whose HF entry has the final norm applied.
"""

from __future__ import annotations

from functools import cache

import torch

from amygdala.artifact import Calibration, ReadoutArtifact
from amygdala.forward.models import LoadedModel

CONCEPT_TEXTS: dict[str, tuple[list[str], list[str]]] = {
    "joy": (["I am so happy and delighted today!", "What a wonderful, joyful surprise."],
            ["I am so sad and miserable today.", "What a terrible, painful loss."]),
    "anger": (["I am furious, this makes me so angry!", "He shouted in rage and slammed the door."],
              ["I feel calm and peaceful.", "She smiled gently and relaxed."]),
    "fear": (["I am terrified of the dark noises.", "Panic gripped me as the footsteps came closer."],
             ["I feel safe and secure at home.", "Everything is fine and under control."]),
}
READOUT_LAYERS = {18: (3, 9, 14), 30: (5, 15, 24), 4: (1, 3)}


def _mean_residuals(loaded: LoadedModel, text: str, layers: tuple[int, ...]) -> torch.Tensor:
    """``[n_layers, hidden]``: each layer's residual averaged over the text's tokens after the first."""
    ids = torch.tensor([loaded.tokenizer(text).input_ids])
    with torch.inference_mode():
        states = loaded.model(input_ids=ids, use_cache=False, output_hidden_states=True).hidden_states
    return torch.stack([states[layer + 1][0, 1:].float().mean(0) for layer in layers])


@cache
def _build(loaded: LoadedModel) -> ReadoutArtifact:
    layers = READOUT_LAYERS[loaded.n_layers]
    directions, pooled = [], []
    for positive, negative in CONCEPT_TEXTS.values():
        pos = torch.stack([_mean_residuals(loaded, text, layers) for text in positive])
        neg = torch.stack([_mean_residuals(loaded, text, layers) for text in negative])
        diff = pos.mean(0) - neg.mean(0)
        directions.append(diff / diff.norm(dim=-1, keepdim=True))
        pooled += [pos, neg]
    vectors = torch.stack(directions, dim=1)  # [L, C, H]
    projections = torch.einsum("nlh,lch->nlc", torch.cat(pooled), vectors)
    calibration = Calibration(mean={layer: projections[:, i].mean(0) for i, layer in enumerate(layers)},
                              std={layer: projections[:, i].std(0) for i, layer in enumerate(layers)})
    return ReadoutArtifact(concepts=tuple(CONCEPT_TEXTS), layers=layers,
                           vectors={layer: vectors[i].contiguous() for i, layer in enumerate(layers)},
                           hidden_size=loaded.hidden_size, calibration=calibration,
                           extra={"fixture": f"diff_of_means of readout_helpers.CONCEPT_TEXTS on {loaded.model_id}"})


def concept_artifact(loaded: LoadedModel) -> ReadoutArtifact:
    """The cached diff-of-means artifact for ``loaded`` (3 concepts, 3 layers, with calibration)."""
    return _build(loaded)


def identity_artifact(loaded: LoadedModel, layers: tuple[int, ...]) -> ReadoutArtifact:
    """One concept per hidden unit with the standard basis as vectors: its readout IS the residual."""
    eye = torch.eye(loaded.hidden_size)
    return ReadoutArtifact(concepts=tuple(f"unit_{i}" for i in range(loaded.hidden_size)), layers=layers,
                           vectors={layer: eye.clone() for layer in layers}, hidden_size=loaded.hidden_size)


def zscored_by_calibration(raw: torch.Tensor, artifact: ReadoutArtifact) -> torch.Tensor:
    """The reference z-score of ``raw[..., layer, concept]`` readouts: ``(x - mean) / std`` from the manifest."""
    calibration = artifact.calibration
    assert calibration is not None
    mean = torch.stack([calibration.mean[layer] for layer in artifact.layers])
    std = torch.stack([calibration.std[layer] for layer in artifact.layers])
    return (raw - mean) / std
