"""``report.json``'s content: every figure of an evaluation as one JSON-ready dict (NaN -> null)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from amygdala.artifact import LayerCurve
from amygdala.evaluation.crossval import CrossValidation
from amygdala.evaluation.results import Evaluation
from amygdala.extraction.examples import Example


def clean(value: Any) -> Any:
    """JSON-ready: NaN/inf -> None, tuples -> lists, Paths -> str, floats rounded to 6 digits."""
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): clean(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(item) for item in value]
    return str(value) if isinstance(value, Path) else value


def report_data(evaluation: Evaluation, curve: LayerCurve | None = None) -> dict[str, Any]:
    """Every figure of ``evaluation`` (and the training layer curve, if any) as one JSON-ready dict."""
    readouts = [{"label": label, "tokens": list(readout.tokens), "layers": list(evaluation.layers),
                 "values": readout.values.tolist()}
                for label, readout in zip(evaluation.readout_labels, evaluation.readouts)]
    return clean({
        "summary": evaluation.summary(), "model": evaluation.model_id, "concepts": evaluation.concepts,
        "layers": evaluation.layers, "options": evaluation.options.to_json(),
        "n_train_texts": evaluation.n_train_texts,
        "separation": [asdict(score) for score in evaluation.scores],
        "ranking": [asdict(ranking) for ranking in evaluation.rankings],
        "crosstalk": {"phi": evaluation.phi, "layers": [asdict(crosstalk) for crosstalk in evaluation.crosstalk]},
        "layer_selection": curve.to_json() if curve else None,
        "crossval": _crossval_data(evaluation.crossval),
        "valence_check": ({**evaluation.valence.summary(), **{key: value for key, value in asdict(evaluation.valence)
                                                              .items() if key != "rho_replicates"}}
                          if evaluation.valence else None),
        "lexical_control": ({**evaluation.lexical.summary(), **asdict(evaluation.lexical)}
                            if evaluation.lexical else None),
        "cross_source": evaluation.cross_source.to_json() if evaluation.cross_source else None,
        "concept_space": evaluation.concept_space.to_json() if evaluation.concept_space else None,
        "readouts": readouts,
        "battery": {result.name: result.to_json() for result in evaluation.battery},
    })


def _crossval_data(crossval: CrossValidation | None) -> dict[str, Any] | None:
    """The cross-validation's figures (not its z-scores); intervals as {estimate, low, high}."""
    if crossval is None:
        return None
    return {**crossval.summary(), "seed": crossval.seed, "layers": crossval.layers,
            "per_concept": [asdict(concept) for concept in crossval.per_concept]}


def example_texts(examples: Sequence[Example], count: int = 6) -> list[tuple[str, str]]:
    """Up to ``count`` held-out positive texts, one per concept (in name order), labelled for the report."""
    chosen: dict[str, str] = {}
    for example in sorted(examples, key=lambda e: (e.emotion, e.key)):
        if example.split == "heldout" and example.polarity == "positive" and example.emotion not in chosen:
            chosen[example.emotion] = example.text
    return [(f"held-out positive: {concept}", text) for concept, text in list(chosen.items())[:count]]
