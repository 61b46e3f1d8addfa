"""Neutral-direction removal: project the top principal components of neutral texts out before fitting.

Neutral texts are the train texts that are a positive for no concept (untagged or flat nodes). Their top ``k``
principal directions ``U [k, H]`` (per layer) carry what varies in text regardless of emotion (topic, length,
style); emotion work removes them before fitting a direction (``P = I - UᵀU``). Everything stays within the
statistics design: the neutral texts' covariance comes from their own ``ConceptStats`` (no concepts), and the
projected statistics follow from the raw ones (``P·sums``, ``P M P``), so streaming and data-parallel sums work
unchanged. Because ``x·(Pv) = (Px)·v``, a direction ``v`` fitted on projected activations is read out on raw
activations by the ordinary vector ``Pv`` (stored unit length): the artifact format does not change.
"""

from __future__ import annotations

import torch

from amygdala.training.splits import LabelledTexts
from amygdala.training.statistics import ConceptStats, DirectionError


def neutral_rows(data: LabelledTexts) -> torch.Tensor:
    """Bool mask ``[n_texts]``: the texts that are a positive for no concept."""
    return ~data.positive.any(dim=1)


def neutral_stats(pooled: torch.Tensor, data: LabelledTexts, layers: tuple[int, ...]) -> ConceptStats:
    """The sums of the neutral texts of ``pooled [n, L, H]`` (rows as ``data``), over no concepts."""
    rows = neutral_rows(data).to(pooled.device)
    empty = torch.zeros((int(rows.sum()), 0), dtype=torch.bool, device=pooled.device)
    return ConceptStats.from_pooled(pooled[rows], empty, empty, (), layers)


def check_neutral_count(n_neutral: int, count: int) -> None:
    """``count`` components need more than ``count`` neutral texts."""
    if count > 0 and n_neutral <= count:
        raise DirectionError(f"removing {count} neutral principal component(s) needs more than {count} neutral texts "
                             f"(train texts positive for no concept); the train split has {n_neutral}: "
                             "lower --remove-neutral-pcs or add untagged nodes")


def neutral_components(stats: ConceptStats, count: int) -> dict[int, torch.Tensor]:
    """The top ``count`` principal directions ``[count, H]`` (orthonormal rows, fp64) of the texts ``stats``
    sums, per layer: eigenvectors of their covariance with the largest eigenvalues."""
    check_neutral_count(stats.n_texts, count)
    components = {}
    for layer in stats.layers:
        _, vectors = torch.linalg.eigh(stats.covariance(layer))  # ascending eigenvalues
        components[layer] = vectors[:, -count:].flip(dims=(1,)).T.contiguous() if count else vectors[:, :0].T
    return components


def _projector(components: torch.Tensor) -> torch.Tensor:
    """``P = I - UᵀU`` for orthonormal rows ``U [k, H]`` (fp64)."""
    u = components.double()
    return torch.eye(u.shape[1], dtype=u.dtype, device=u.device) - u.T @ u


def project_stats(stats: ConceptStats, components: dict[int, torch.Tensor]) -> ConceptStats:
    """The statistics of the projected activations ``P x`` at every layer, from the raw sums."""
    p = torch.stack([_projector(components[layer]).to(stats.total_sum.device) for layer in stats.layers])
    return ConceptStats(stats.concepts, stats.layers, stats.positive_sum @ p, stats.negative_sum @ p,
                        stats.positive_count, stats.negative_count, torch.einsum("lh,lhk->lk", stats.total_sum, p),
                        p @ stats.second_moment @ p, stats.n_texts)


def project_vectors(vectors: dict[int, torch.Tensor], components: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
    """Unit rows of ``P v`` per layer (in ``vectors``' dtype): readout vectors for raw activations."""
    out = {}
    for layer, v in vectors.items():
        projected = v.double() @ _projector(components[layer]).to(v.device)
        out[layer] = (projected / projected.norm(dim=1, keepdim=True)).to(v.dtype)
    return out


def project_out(pooled: torch.Tensor, components: dict[int, torch.Tensor], layers: tuple[int, ...]) -> torch.Tensor:
    """``P x`` of pooled activations ``[n, L, H]`` (second axis in ``layers`` order)."""
    return torch.stack([pooled[:, i].double() @ _projector(components[layer]) for i, layer in enumerate(layers)],
                       dim=1).to(pooled.dtype)
