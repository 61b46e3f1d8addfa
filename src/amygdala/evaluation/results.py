"""What an evaluation measured: its options and one typed record per figure (``Evaluation`` holds them all).

The figures and how each is measured are described in ``amygdala.evaluation.stage``; ``report`` writes them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from amygdala.artifact import ReadoutArtifact
from amygdala.errors import AmygdalaError
from amygdala.evaluation.checks.options import CheckResult
from amygdala.evaluation.concept_space import ConceptSpace
from amygdala.evaluation.crossval import DEFAULT_N_BOOT, CrossValidation
from amygdala.evaluation.lexical_control import LexicalControl
from amygdala.evaluation.sources import CrossSource
from amygdala.evaluation.valence import ValenceCheck
from amygdala.forward.pooling import PoolingSpec
from amygdala.readout.projection import (
    TextReadout,
)
from amygdala.training.directions import DEFAULT_METHOD


class EvalError(AmygdalaError):
    """Evaluation inputs that cannot be measured: names every problem."""


@dataclass(frozen=True)
class EvalOptions:
    """How to evaluate; pooling must match training (``resolved`` takes it from the artifact's record)."""

    pooling: PoolingSpec | None = None
    """How each text is pooled; None: as the artifact was trained (the default spec if it records none)."""
    method: str | None = None
    """Direction method for the stability halves (a key of ``DIRECTION_METHODS``); None: as trained."""
    batch_size: int | None = None
    """Most texts per forward pass; None: only ``batch_tokens`` caps (both None: the device's default)."""
    batch_tokens: int | None = None
    """Most padded tokens per forward pass of the length-sorted texts; None: only ``batch_size`` caps."""
    seed: int = 0
    """Seeds the random baseline directions and the stability halves."""
    cosine_flag: float = 0.8
    """Flag concept pairs whose vectors have a cosine above this."""
    explained_flag: float = 0.9
    """Flag concepts whose vector the others explain with ridge R² at least this."""
    ridge_alpha: float = 0.01
    """Ridge penalty for the explained-by-others fit (vectors are unit length)."""
    cache_dir: Path | None = None
    """Reuse pooled activations stored here (the same cache ``train --cache-dir`` writes)."""
    progress: bool = False
    """Show a progress bar while pooling."""
    folds: int | None = None
    """Also cross-validate by node over both splits with this many folds (>= 2); None: the held-out split only."""
    n_boot: int = DEFAULT_N_BOOT
    """Bootstrap resamples behind each 95% confidence interval (cross-validation, valence check)."""
    valence_check: bool = False
    """Also run the valence check on the bundled human-rated sentences (``valence``)."""
    valence_sentences: int | None = None
    """With ``valence_check``, use only the first N rated sentences (a quicker, wider-CI check); None: all 600."""

    def resolved(self, artifact: ReadoutArtifact) -> EvalOptions:
        """These options with ``pooling`` and ``method`` set, from ``artifact``'s training record where None."""
        trained = artifact.record.method if artifact.record is not None else DEFAULT_METHOD
        return replace(self, pooling=self.pooling or artifact.pooling, method=self.method or trained)

    @property
    def spec(self) -> PoolingSpec:
        """``pooling``, or the default spec while unresolved."""
        return self.pooling or PoolingSpec()

    def to_json(self) -> dict[str, Any]:
        """Flat, as the report stores the options (the spec's fields first)."""
        fields = {name: value for name, value in asdict(self).items() if name != "pooling"}
        spec = self.spec
        return {"pooling": spec.pooling, "skip_tokens": spec.skip, "chat_template": spec.chat_template,
                "max_length": spec.max_length, **fields}


@dataclass(frozen=True)
class ConceptLayerScore:
    """One concept at one layer: held-out separation, its random baseline, and stability (NaN: not measurable)."""

    concept: str
    layer: int
    auroc: float
    cohens_d: float
    random_auroc: float
    random_cohens_d: float
    stability: float
    n_positive: int
    n_negative: int


@dataclass(frozen=True)
class Ranking:
    """N-way ranking of held-out positives at one layer (``None``: mean z over the artifact's layers)."""

    layer: int | None
    top1: float
    top3: float
    mean_rank: float
    n_pairs: int
    confusion: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class CrossTalk:
    """One layer's cosine matrix, ridge R² per concept, and the flagged pairs and concepts."""

    layer: int
    cosine: tuple[tuple[float, ...], ...]
    explained: tuple[float, ...]
    close_pairs: tuple[tuple[str, str, float], ...]
    explained_concepts: tuple[str, ...]


@dataclass(frozen=True)
class Evaluation:
    """Every figure ``evaluate`` measured; ``readouts`` are per-token readouts (z-scores when the artifact is
    calibrated) of the extra texts, named by ``readout_labels``; ``battery`` the validation battery's results
    (``evaluation.checks``), in the order they ran."""

    model_id: str
    concepts: tuple[str, ...]
    layers: tuple[int, ...]
    options: EvalOptions
    scores: tuple[ConceptLayerScore, ...]
    rankings: tuple[Ranking, ...]
    phi: tuple[tuple[float, ...], ...]
    crosstalk: tuple[CrossTalk, ...]
    n_heldout_texts: int
    n_train_texts: int
    readouts: tuple[TextReadout, ...] = field(default=())
    readout_labels: tuple[str, ...] = field(default=())
    readouts_zscored: bool = False
    crossval: CrossValidation | None = None
    valence: ValenceCheck | None = None
    lexical: LexicalControl | None = None
    cross_source: CrossSource | None = None
    concept_space: ConceptSpace | None = None
    battery: tuple[CheckResult, ...] = field(default=())

    def summary(self) -> dict[str, Any]:
        """Mean and min held-out AUROC over every (concept, layer) of the artifact, the random baseline's mean,
        top-1/top-3 of the mean-z ranking, and the mean stability (NaNs left out)."""
        measured = [s for s in self.scores if not math.isnan(s.auroc)]
        worst = min(measured, key=lambda s: s.auroc, default=None)
        combined = next(r for r in self.rankings if r.layer is None)
        return {"mean_auroc": nanmean([s.auroc for s in self.scores]),
                "min_auroc": worst.auroc if worst else math.nan,
                "min_auroc_at": [worst.concept, worst.layer] if worst else None,
                "random_mean_auroc": nanmean([s.random_auroc for s in self.scores]),
                "mean_cohens_d": nanmean([s.cohens_d for s in self.scores]),
                "top1": combined.top1, "top3": combined.top3,
                "mean_stability": nanmean([s.stability for s in self.scores]),
                "layers": list(self.layers), "n_concepts": len(self.concepts),
                "n_heldout_texts": self.n_heldout_texts, "n_unmeasured": len(self.scores) - len(measured)}


def nanmean(values: Sequence[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan
