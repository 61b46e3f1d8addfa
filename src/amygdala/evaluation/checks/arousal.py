"""Arousal beside valence, as a check of the battery: ``evaluation.arousal`` on the bundled EmoBank slice.

The figures and their sources are described in ``amygdala.evaluation.arousal``; this module only gives that check
the battery's signature and result shape (``options.CheckResult``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from amygdala.artifact import ReadoutArtifact
from amygdala.evaluation.arousal import ArousalCheck, check_arousal
from amygdala.evaluation.checks.options import CheckOptions
from amygdala.forward.models import LoadedModel


@dataclass(frozen=True)
class Arousal:
    """The arousal check's figures; ``skipped`` the artifact's concepts without a concept arousal."""

    check: ArousalCheck
    skipped: tuple[str, ...]
    note: str | None = None
    name: str = "arousal"

    def to_json(self) -> dict[str, Any]:
        return {**self.check.to_json(), "skipped": list(self.skipped), "note": self.note}

    def line(self) -> str:
        rho = self.check.rho
        if math.isnan(rho.estimate):
            return f"arousal axis: not measured ({self.check.n_concepts - len(self.skipped)} concepts with arousal)"
        pc = self.check.pc_r
        return (f"arousal axis rho {rho.estimate:+.3f} [{rho.low:+.3f}, {rho.high:+.3f}] over "
                f"{self.check.n_sentences} EmoBank sentences; PC1|valence {pc.get('pc1_valence', math.nan):.2f}, "
                f"PC2|arousal {pc.get('pc2_arousal', math.nan):.2f}")


def arousal(loaded: LoadedModel, artifact: ReadoutArtifact, options: CheckOptions) -> Arousal:
    """The arousal check of ``artifact``'s vectors, pooled as ``options.spec`` (as trained)."""
    check = check_arousal(loaded, artifact, spec=options.spec, sentences=options.corpus_sentences,
                          n_boot=options.n_boot, seed=options.seed)
    covered = {concept for concept, _ in check.concept_arousal}
    return Arousal(check, tuple(c for c in artifact.concepts if c not in covered))
