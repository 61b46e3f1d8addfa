"""Logit lens: each concept vector through the model's final norm and unembedding; which tokens does it promote
and suppress?

For each concept and layer, ``logits = unembed(final_norm(v))`` with the model's own modules (for Gemma the
final RMSNorm and the tied ``lm_head``; a logit soft-cap is monotone and changes no order); the ``top_k // 2``
highest and lowest logits, decoded one token id at a time by the tokenizer. A model without an output
embedding or a final norm is skipped with a note.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from amygdala.artifact import ReadoutArtifact
from amygdala.evaluation.checks.options import CheckOptions
from amygdala.forward.models import LoadedModel

_NORM_PATHS = ("model.norm", "model.language_model.norm", "transformer.ln_f", "gpt_neox.final_layer_norm", "norm")


@dataclass(frozen=True)
class LensTokens:
    concept: str
    layer: int
    top: tuple[str, ...]
    bottom: tuple[str, ...]


@dataclass(frozen=True)
class LogitLens:
    entries: tuple[LensTokens, ...]
    skipped: tuple[str, ...] = ()
    note: str | None = None
    name: str = "logit_lens"

    def to_json(self) -> dict[str, Any]:
        return {"skipped": list(self.skipped), "note": self.note,
                "entries": [{"concept": e.concept, "layer": e.layer, "top": list(e.top), "bottom": list(e.bottom)}
                            for e in self.entries]}

    def line(self) -> str:
        if self.note:
            return f"skipped: {self.note}"
        deepest = max(e.layer for e in self.entries)
        shown = [e for e in self.entries if e.layer == deepest][:3]
        return f"layer {deepest} top tokens: " + "; ".join(
            f"{e.concept}: {', '.join(t.strip() for t in e.top[:4])}" for e in shown)


def _module(model: nn.Module, path: str) -> nn.Module | None:
    module: object = model
    for part in path.split("."):
        module = getattr(module, part, None)
    return module if isinstance(module, nn.Module) else None


def unembedding(loaded: LoadedModel) -> tuple[nn.Module, nn.Module] | str:
    """(final norm, output embedding) of the model, or why there are none."""
    get_output = getattr(loaded.model, "get_output_embeddings", None)
    head = get_output() if callable(get_output) else None
    if not isinstance(head, nn.Module):
        return f"{loaded.model_id} has no unembedding (output embeddings): the logit lens needs a causal LM head"
    norm = next((m for m in (_module(loaded.model, p) for p in _NORM_PATHS) if m is not None), None)
    if norm is None:
        return f"{loaded.model_id} has no final norm at {', '.join(_NORM_PATHS)}: the logit lens needs one"
    return norm, head


def logit_lens(loaded: LoadedModel, artifact: ReadoutArtifact, options: CheckOptions) -> LogitLens:
    """Top and bottom tokens of every concept vector at every layer of the artifact (see the module doc)."""
    found = unembedding(loaded)
    if isinstance(found, str):
        return LogitLens((), artifact.concepts, found)
    norm, head = found
    tokenizer: Any = loaded.tokenizer
    count = max(1, options.top_k // 2)
    entries = []
    with torch.no_grad():
        for layer in artifact.layers:
            weight = next(head.parameters())
            vectors = artifact.vectors[layer].to(device=weight.device, dtype=weight.dtype)
            logits = head(norm(vectors[:, None, :]))[:, 0].float()
            top = logits.topk(count, dim=-1).indices.tolist()
            bottom = (-logits).topk(count, dim=-1).indices.tolist()
            entries += [LensTokens(concept, layer, tuple(tokenizer.decode([i]) for i in top[c]),
                                   tuple(tokenizer.decode([i]) for i in bottom[c]))
                        for c, concept in enumerate(artifact.concepts)]
    return LogitLens(tuple(entries))
