"""K-fold cross-validation by node on pooled activations: every text scored once, by vectors that never saw it.

The distinct node keys are dealt into ``folds`` parts (``splits.key_folds``, seeded), so one node's texts never
sit on both sides. For each part, ``fit`` (default: ``directions.fit_directions`` with ``DEFAULT_METHOD``) fits
unit vectors on the other parts; the part's texts are projected on them and z-scored with the mean and std of
the fitting texts' projections (``readout.calibrated``), exactly as a trained artifact's calibration does. The
out-of-fold z-scores of all parts are then measured together, with the pooled activations computed once:

- a text's **score** for a concept is its z-score averaged over ``layers`` (the readout's mean z);
- per concept, the **AUROC** of the scores of its positives against its negatives (``metrics.auroc``, i.e.
  ``sklearn.metrics.roc_auc_score``), plus the AUROC at each layer alone (point estimates);
- **top-1 / top-3**: the share of (text, concept) positives whose filtered rank (``metrics.filtered_ranks``)
  is at most 1 / 3;
- the **random baseline**: the same AUROC for seeded random unit directions, z-scored over all texts;
- every figure carries a **bootstrap 95% CI** (``n_boot`` resamples of the nodes with replacement, percentile
  interval), since node texts are not independent. The draws depend only on the keys, ``n_boot`` and ``seed``,
  so two variants cross-validated alike share them: ``paired_cv`` gives one variant's mean AUROC, top-1 and
  top-3 minus the other's with the CI of the difference over those same draws (``metrics.paired_difference``).

A concept whose positives or negatives all fall into one part cannot be fitted for that part: its scores there
are NaN and are left out of every figure (``n_positive`` / ``n_negative`` count the scored texts).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from amygdala.errors import AmygdalaError
from amygdala.evaluation.metrics import (
    Interval,
    PairedDifference,
    PairingError,
    auroc,
    bootstrap_weights,
    filtered_ranks,
    paired_difference,
    percentile_interval,
    random_unit_directions,
    weighted_auroc,
)
from amygdala.readout.projection import Projector, calibrated, project_pooled
from amygdala.training.directions import DEFAULT_METHOD, fit_directions
from amygdala.training.splits import LabelledTexts, key_folds

Fit = Callable[[torch.Tensor, LabelledTexts], dict[int, torch.Tensor]]
DEFAULT_N_BOOT = 1000


class CrossValidationError(AmygdalaError):
    """Cross-validation inputs that cannot be split or measured: names every problem."""


@dataclass(frozen=True)
class ConceptCV:
    """One concept over all folds: AUROC of the out-of-fold mean z with its CI, the random baseline's, and the
    AUROC at each layer alone (``CrossValidation.layers`` order)."""

    concept: str
    auroc: Interval
    random_auroc: Interval
    layer_auroc: tuple[float, ...]
    n_positive: int
    n_negative: int


@dataclass(frozen=True)
class CrossValidation:
    """Every figure of ``cross_validate``; ``z [n_texts, n_layers, n_concepts]`` holds the out-of-fold z-scores
    (rows as the data, NaN where a fold could not fit the concept), ``fold`` the part each text was scored in,
    ``extra_z`` the mean over folds of the z-scores of the ``extra`` texts (None without them), and
    ``replicates`` the bootstrap replicates ``[n_boot]`` of ``mean_auroc``, ``top1`` and ``top3`` (for
    ``paired_cv``)."""

    concepts: tuple[str, ...]
    layers: tuple[int, ...]
    folds: int
    seed: int
    n_boot: int
    per_concept: tuple[ConceptCV, ...]
    mean_auroc: Interval
    random_mean_auroc: Interval
    top1: Interval
    top3: Interval
    n_pairs: int
    n_nodes: int
    fold: tuple[int, ...]
    z: torch.Tensor
    extra_z: torch.Tensor | None = None
    replicates: Mapping[str, torch.Tensor] = field(default_factory=dict)

    @property
    def scores(self) -> torch.Tensor:
        """Out-of-fold mean z over the layers, ``[n_texts, n_concepts]``."""
        return self.z.mean(dim=1)

    def summary(self) -> dict[str, Any]:
        """The headline figures, CIs as ``[low, high]``."""
        def pair(interval: Interval) -> list[float]:
            return [interval.low, interval.high]

        return {"folds": self.folds, "mean_auroc": self.mean_auroc.estimate, "mean_auroc_ci": pair(self.mean_auroc),
                "random_mean_auroc": self.random_mean_auroc.estimate,
                "random_mean_auroc_ci": pair(self.random_mean_auroc),
                "top1": self.top1.estimate, "top1_ci": pair(self.top1), "top3": self.top3.estimate,
                "top3_ci": pair(self.top3), "n_pairs": self.n_pairs, "n_texts": len(self.fold),
                "n_nodes": self.n_nodes, "n_boot": self.n_boot}


def fold_problems(keys: Sequence[str], folds: int, name: str = "folds") -> list[str]:
    """What keeps ``keys`` from being dealt into ``folds`` parts (``name``: how the caller calls the count)."""
    problems = []
    if folds < 2:
        problems.append(f"{name} {folds} must be >= 2 (each part is scored by vectors fitted on the others)")
    if folds > len(set(keys)):
        problems.append(f"{name} {folds} is more than the {len(set(keys))} node(s) to deal into them: lower it")
    return problems


def cv_problems(pooled: torch.Tensor, data: LabelledTexts, keys: Sequence[str], layers: Sequence[int],
                folds: int) -> list[str]:
    """What makes the cross-validation impossible (empty when nothing), before any fitting."""
    problems = fold_problems(keys, folds)
    if not len(keys) == len(data.texts) == pooled.shape[0]:
        problems.append(f"{pooled.shape[0]} pooled rows, {len(data.texts)} texts and {len(keys)} keys must match")
    if pooled.dim() != 3 or pooled.shape[1] != len(layers):
        problems.append(f"pooled activations {tuple(pooled.shape)} must be [texts, {len(layers)} layers, hidden]")
    return problems


def _oof_z(pooled: torch.Tensor, data: LabelledTexts, parts: list[list[int]], layers: Sequence[int], fit: Fit,
           extra: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Out-of-fold z-scores ``[n, L, C]`` and the extra texts' z-scores averaged over the folds."""
    n_texts, concepts = pooled.shape[0], data.concepts
    z = torch.full((n_texts, len(layers), len(concepts)), math.nan)
    extra_sum = None if extra is None else torch.zeros((extra.shape[0], len(layers), len(concepts)))
    for rows in parts:
        rest = sorted(set(range(n_texts)) - set(rows))
        vectors = fit(pooled[rest], data.subset(rest))
        stacked = torch.stack([vectors[layer].float() for layer in layers])
        projector = calibrated(Projector(concepts, tuple(layers), stacked, None, None), pooled[rest].float())
        z[rows] = project_pooled(pooled[rows].float(), projector, zscore=True)
        if extra is not None and extra_sum is not None:
            extra_sum += project_pooled(extra.float(), projector, zscore=True)
    return z, None if extra_sum is None else extra_sum / len(parts)


def _random_scores(pooled: torch.Tensor, concepts: tuple[str, ...], layers: Sequence[int], seed: int) -> torch.Tensor:
    """Mean over layers of the projections on seeded random unit directions, z-scored over all texts, ``[n, C]``."""
    random = random_unit_directions(len(layers), len(concepts), pooled.shape[2], seed)
    projector = calibrated(Projector(concepts, tuple(layers), random, None, None), pooled.float())
    return project_pooled(pooled.float(), projector, zscore=True).mean(dim=1)


def _concept_auroc(scores: torch.Tensor, data: LabelledTexts, concept: int,
                   weights: torch.Tensor) -> tuple[Interval, torch.Tensor, int, int]:
    """(AUROC with CI, its bootstrap replicates, scored positives, scored negatives) of one concept's scores."""
    column = scores[:, concept]
    scored = torch.isfinite(column)
    positive, negative = data.positive[:, concept] & scored, data.negative[:, concept] & scored
    estimate = auroc(column[positive].double().numpy(), column[negative].double().numpy())
    replicates = weighted_auroc(column.nan_to_num(0.0), positive, negative, weights)
    return percentile_interval(estimate, replicates), replicates, int(positive.sum()), int(negative.sum())


def _topk(scores: torch.Tensor, data: LabelledTexts,
          weights: torch.Tensor) -> tuple[list[tuple[Interval, torch.Tensor]], int]:
    """Top-1 and top-3 of the filtered ranks of the scored positives, each with its CI and bootstrap replicates
    (a pair is drawn as often as its text's node), and how many pairs count."""
    truths, ranks, _ = filtered_ranks(scores.nan_to_num(-math.inf), data)
    rows = data.positive.nonzero()[:, 0]
    scored = torch.tensor([math.isfinite(float(scores[row, truth])) for row, truth in zip(rows.tolist(), truths)],
                          dtype=torch.bool)
    rank = torch.tensor(ranks, dtype=torch.float64)[scored]
    pair_weights = weights[:, rows[scored]]
    intervals = []
    for k in (1, 3):
        hits = (rank <= k).double()
        estimate = float(hits.mean()) if hits.numel() else math.nan
        totals = pair_weights.sum(dim=1)
        replicates = (pair_weights @ hits) / torch.where(totals > 0, totals, math.nan)
        intervals.append((percentile_interval(estimate, replicates), replicates))
    return intervals, int(scored.sum())


def _layer_aurocs(z: torch.Tensor, data: LabelledTexts, concept: int) -> tuple[float, ...]:
    values = []
    for position in range(z.shape[1]):
        column = z[:, position, concept]
        scored = torch.isfinite(column)
        values.append(auroc(column[data.positive[:, concept] & scored].double().numpy(),
                            column[data.negative[:, concept] & scored].double().numpy()))
    return tuple(values)


def _mean_interval(estimates: Sequence[float], replicates: list[torch.Tensor]) -> tuple[Interval, torch.Tensor]:
    """The mean over concepts with its CI, and its replicates (per draw, the mean over the concepts it scores)."""
    kept = [e for e in estimates if not math.isnan(e)]
    estimate = sum(kept) / len(kept) if kept else math.nan
    mean_replicates = torch.stack(replicates).nanmean(dim=0)
    return percentile_interval(estimate, mean_replicates), mean_replicates


def cross_validate(pooled: torch.Tensor, data: LabelledTexts, keys: Sequence[str], layers: Sequence[int], *,
                   folds: int, seed: int, fit: Fit | None = None, n_boot: int = DEFAULT_N_BOOT,
                   extra: torch.Tensor | None = None) -> CrossValidation:
    """Cross-validate by node (see the module docstring): ``pooled [n_texts, len(layers), hidden]`` (rows as
    ``data``, as ``pooling.pool_texts`` returns them), ``keys`` the node of each text, ``fit(pooled, data) ->
    {layer: [n_concepts, hidden]}``. ``extra [m, len(layers), hidden]``: other texts (a control set) to score
    with every fold's vectors; their mean z over the folds is ``extra_z``."""
    if problems := cv_problems(pooled, data, keys, layers, folds):
        raise CrossValidationError("cross-validation: " + "; ".join(problems))
    fit = fit or (lambda part_pooled, part: fit_directions(part_pooled, part, layers, DEFAULT_METHOD))
    parts = key_folds(keys, folds, seed)
    z, extra_z = _oof_z(pooled, data, parts, layers, fit, extra)
    fold = [0] * len(keys)
    for index, rows in enumerate(parts):
        for row in rows:
            fold[row] = index
    weights = bootstrap_weights(keys, n_boot, seed)
    scores, random_scores = z.mean(dim=1), _random_scores(pooled, data.concepts, layers, seed)
    per_concept, replicates, random_replicates = [], [], []
    for c, concept in enumerate(data.concepts):
        interval, reps, n_pos, n_neg = _concept_auroc(scores, data, c, weights)
        random_interval, random_reps, _, _ = _concept_auroc(random_scores, data, c, weights)
        per_concept.append(ConceptCV(concept, interval, random_interval, _layer_aurocs(z, data, c), n_pos, n_neg))
        replicates.append(reps)
        random_replicates.append(random_reps)
    ((top1, top1_replicates), (top3, top3_replicates)), n_pairs = _topk(scores, data, weights)
    mean_auroc, mean_replicates = _mean_interval([c.auroc.estimate for c in per_concept], replicates)
    random_mean, _ = _mean_interval([c.random_auroc.estimate for c in per_concept], random_replicates)
    return CrossValidation(
        data.concepts, tuple(layers), folds, seed, n_boot, tuple(per_concept), mean_auroc, random_mean,
        top1, top3, n_pairs, len(set(keys)), tuple(fold), z, extra_z,
        {"mean_auroc": mean_replicates, "top1": top1_replicates, "top3": top3_replicates})


@dataclass(frozen=True)
class PairedCV:
    """``paired_cv(a, b)``: variant ``a``'s figure minus ``b``'s, each with the CI over the same node draws."""

    mean_auroc: PairedDifference
    top1: PairedDifference
    top3: PairedDifference

    def summary(self) -> dict[str, Any]:
        return {"mean_auroc": self.mean_auroc.summary(), "top1": self.top1.summary(), "top3": self.top3.summary()}


def paired_cv(a: CrossValidation, b: CrossValidation) -> PairedCV:
    """``a`` minus ``b`` on mean AUROC, top-1 and top-3, over the same bootstrap draws of the nodes. Both must be
    ``cross_validate`` results on the same texts, keys, folds, ``seed`` and ``n_boot`` (so the same draws);
    the fit (pooling, method, layers) may differ."""
    problems = [f"{name} {getattr(a, name)} vs {getattr(b, name)}" for name in ("folds", "seed", "n_boot", "n_nodes")
                if getattr(a, name) != getattr(b, name)]
    if a.fold != b.fold or a.concepts != b.concepts:
        problems.append("different texts, node keys or concepts")
    if problems or not a.replicates or not b.replicates:
        raise PairingError("paired cross-validation needs the same bootstrap draws: "
                           + ("; ".join(problems) or "a result without replicates"))
    figures = {name: paired_difference(getattr(a, name).estimate, a.replicates[name], getattr(b, name).estimate,
                                       b.replicates[name]) for name in ("mean_auroc", "top1", "top3")}
    return PairedCV(**figures)
