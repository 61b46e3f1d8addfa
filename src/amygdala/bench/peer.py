"""The train benchmark's peer, ``steering-vectors`` (an optional test-only package): its vectors for our examples.

It is not a dependency of amygdala: its own pins would pull transformers back to 4.x, so it is installed without
its dependencies (``PEER_INSTALL``). Without it the benchmark still reports its own figures and leaves out the
peer's columns, saying so in one line (``missing_peer_line``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from amygdala.artifact import ReadoutArtifact
from amygdala.extraction.examples import Example
from amygdala.forward.models import LoadedModel

PEER = "steering-vectors"
PEER_MODULE = "steering_vectors"
PEER_INSTALL = "pip install --no-deps steering-vectors==0.12.2"
#: The JSON keys (and ``seconds`` / ``cpu_ratios`` entries) that need the peer.
PEER_COLUMNS = ("speedup_vs_steering_vectors", "min_cosine_vs_steering_vectors")

#: concept -> layer -> the peer's vector there.
PeerVectors = dict[str, dict[int, torch.Tensor]]
PeerRun = Callable[[LoadedModel, list[Example], Sequence[int], int], PeerVectors]


def peer_run() -> PeerRun | None:
    """The peer's trainer, or None when ``steering_vectors`` is not importable (any other missing module, e.g. one
    of the peer's own dependencies, propagates: that is a broken install, not an absent peer)."""
    try:
        from steering_vectors import train_steering_vector
        from steering_vectors.aggregators import mean_aggregator
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] != PEER_MODULE:
            raise
        return None

    def run(loaded: LoadedModel, examples: list[Example], layers: Sequence[int], batch_size: int) -> PeerVectors:
        """One ``train_steering_vector`` per concept over its (positive, negative) pairs."""
        vectors = {}
        for concept in sorted({e.emotion for e in examples}):
            positive = [e.text for e in examples if e.emotion == concept and e.polarity == "positive"]
            negative = [e.text for e in examples if e.emotion == concept and e.polarity == "negative"]
            steering: Any = train_steering_vector(loaded.model, loaded.tokenizer, list(zip(positive, negative)),
                                                  layers=list(layers), read_token_index=-1,
                                                  aggregator=mean_aggregator(), batch_size=batch_size)
            vectors[concept] = steering.layer_activations
        return vectors

    return run


def missing_peer_line() -> str:
    """What the benchmark says, once, when the peer is absent."""
    return (f"{PEER} is not installed, so {' and '.join(PEER_COLUMNS)} are left out: {PEER_INSTALL} "
            "(--no-deps: its own pins would downgrade transformers)")


def min_cosine(artifact: ReadoutArtifact, peer: PeerVectors) -> float:
    """The least cosine between the peer's vectors and ours, over concepts and layers."""
    cosines = [torch.nn.functional.cosine_similarity(artifact.vectors[layer][index].double(),
                                                     peer[concept][layer].double().flatten(), dim=0).item()
               for index, concept in enumerate(artifact.concepts) for layer in artifact.layers]
    return min(cosines)
