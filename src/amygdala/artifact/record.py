"""The training record: how an artifact's vectors were trained, typed, and its manifest fields.

``record_fields`` writes a ``TrainingRecord`` as the manifest's ``model``, ``training`` and (when the layers
were chosen automatically) ``layer_selection`` fields, in the layout amygdala 0.1.0 wrote;
``record_problems`` and ``record_from_manifest`` read them back. Nothing outside ``amygdala.artifact`` reads
those fields: every other module gets the typed record from ``ReadoutArtifact.record``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from amygdala.forward.pooling import POOLINGS, PoolingSpec

RECORD_FIELDS = ("model", "training", "layer_selection")
Rules = tuple[tuple[str, str, Callable[[Any], bool]], ...]
LEXICAL_RULE_NAMES = ("none", "negatives", "project", "both")
"""The names of ``training.lexical.LEXICAL_RULES`` (the artifact does not import training)."""


@dataclass(frozen=True)
class ModelIdentity:
    """The model an artifact was trained on: its id, weight fingerprint (``models.model_fingerprint``), depth."""

    id: str
    fingerprint: str | None = None
    n_layers: int | None = None


@dataclass(frozen=True)
class LayerCurve:
    """Validation AUROC of every layer (mean and min over concepts) and the layers chosen from it."""

    layers: tuple[int, ...]
    mean_auroc: tuple[float, ...]
    min_auroc: tuple[float, ...]
    chosen: tuple[int, ...]
    method: str
    folds: int
    seed: int
    n_train_texts: int

    def to_json(self) -> dict[str, Any]:
        """JSON-ready (NaN as None), as the manifest's ``layer_selection`` and the report hold it."""
        return {name: [None if isinstance(v, float) and math.isnan(v) else v for v in value]
                if isinstance(value, tuple) else value for name, value in asdict(self).items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LayerCurve:
        floats = {name: tuple(math.nan if v is None else float(v) for v in data[name])
                  for name in ("mean_auroc", "min_auroc")}
        return cls(tuple(int(v) for v in data["layers"]), floats["mean_auroc"], floats["min_auroc"],
                   tuple(int(v) for v in data["chosen"]), str(data["method"]), int(data["folds"]),
                   int(data["seed"]), int(data["n_train_texts"]))


@dataclass(frozen=True)
class TrainingRecord:
    """How an artifact's vectors were trained. Evaluation and offline readout pool as ``pooling`` says, so
    they read what training read."""

    model: ModelIdentity
    method: str
    """The direction method (a key of ``directions.DIRECTION_METHODS``)."""
    pooling: PoolingSpec
    forward_dtype: str
    """The precision of the forward passes (statistics are fp64 and the vectors float32 whatever it was)."""
    counts: Mapping[str, tuple[int, int]]
    """Concept -> (positive, negative) unique train texts."""
    n_unique_texts: int
    data_sha256: str
    """``training.data_sha256`` of the train examples (order-independent)."""
    split: str = "train"
    layer_curve: LayerCurve | None = None
    """The validation curve, when the layers were chosen automatically (``target_layers=AutoLayers(...)``)."""
    world_size: int = 1
    """Processes of a data-parallel run (torchrun) that trained it; written only when more than one, so a
    single-process manifest keeps the 0.1.0 layout."""
    shrinkage: Mapping[int, float] | None = None
    """Layer -> the covariance shrinkage a data-driven method (``directions.SHRINKAGE_RULES``) chose there;
    written only for those methods."""
    neutral_pcs: int = 0
    """Principal components of the neutral texts removed before fitting (``amygdala.training.neutral``); written only
    when more than zero."""
    lexical: str = "none"
    """The lexical remedy it was trained with (``training.lexical.LEXICAL_RULES``); written only when not none."""


def record_fields(record: TrainingRecord) -> dict[str, Any]:
    """The record as manifest fields (the 0.1.0 layout, key order included)."""
    spec = record.pooling
    fields: dict[str, Any] = {
        "model": asdict(record.model),
        "training": {"method": record.method, "pooling": spec.pooling, "skip_tokens": spec.skip,
                     "chat_template": spec.chat_template, "forward_dtype": record.forward_dtype,
                     "max_length": spec.max_length, "split": record.split, "data_sha256": record.data_sha256,
                     "counts": {c: {"positive": p, "negative": n} for c, (p, n) in record.counts.items()},
                     "n_unique_texts": record.n_unique_texts}}
    if record.world_size != 1:
        fields["training"]["world_size"] = record.world_size
    if record.shrinkage is not None:
        fields["training"]["shrinkage"] = {str(layer): alpha for layer, alpha in record.shrinkage.items()}
    if record.neutral_pcs:
        fields["training"]["neutral_pcs"] = record.neutral_pcs
    if record.lexical != "none":
        fields["training"]["lexical"] = record.lexical
    if record.layer_curve is not None:
        fields["layer_selection"] = record.layer_curve.to_json()
    return fields


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_counts(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(row, dict) and _is_count(row.get("positive"))
                                           and _is_count(row.get("negative")) for row in value.values())


def _is_numbers(value: object) -> bool:
    return isinstance(value, list) and all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
                                           for v in value)


def _is_shrinkage(value: object) -> bool:
    return isinstance(value, dict) and all(
        key.isdigit() and isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1
        for key, v in value.items())


def _is_ints(value: object) -> bool:
    return isinstance(value, list) and all(_is_int(v) for v in value)


_TRAINING: Rules = (
    ("method", "a string", lambda v: isinstance(v, str)),
    ("pooling", " or ".join(map(repr, POOLINGS)), lambda v: v in POOLINGS),
    ("skip_tokens", "a non-negative integer", _is_count),
    ("chat_template", "true or false", lambda v: isinstance(v, bool)),
    ("forward_dtype", "a string", lambda v: isinstance(v, str)),
    ("max_length", "a positive integer or null", lambda v: v is None or (_is_int(v) and v > 0)),
    ("split", "a string", lambda v: isinstance(v, str)),
    ("data_sha256", "a string", lambda v: isinstance(v, str)),
    ("counts", "an object of concept -> {positive, negative}", _is_counts),
    ("n_unique_texts", "a non-negative integer", _is_count),
    ("world_size", "a positive integer", lambda v: _is_int(v) and v > 0),
    ("shrinkage", "an object of layer -> number in [0, 1]", _is_shrinkage),
    ("neutral_pcs", "a non-negative integer", _is_count),
    ("lexical", " or ".join(map(repr, LEXICAL_RULE_NAMES)), lambda v: v in LEXICAL_RULE_NAMES),
)
_OPTIONAL_TRAINING = ("world_size", "shrinkage", "neutral_pcs", "lexical")
_MODEL: Rules = (
    ("id", "a string", lambda v: isinstance(v, str)),
    ("fingerprint", "a string or null", lambda v: v is None or isinstance(v, str)),
    ("n_layers", "a positive integer or null", lambda v: v is None or (_is_int(v) and v > 0)),
)
_CURVE: Rules = (
    ("layers", "a list of integers", _is_ints),
    ("mean_auroc", "a list of numbers", _is_numbers),
    ("min_auroc", "a list of numbers", _is_numbers),
    ("chosen", "a list of integers", _is_ints),
    ("method", "a string", lambda v: isinstance(v, str)),
    ("folds", "an integer", _is_int),
    ("seed", "an integer", _is_int),
    ("n_train_texts", "an integer", _is_int),
)


def _section_problems(section: str, value: object, rules: Rules, required: tuple[str, ...]) -> list[str]:
    if not isinstance(value, dict):
        return [f"field {section!r} must be an object, not {json.dumps(value)[:40]}"]
    missing = [f"{section}.{name}" for name in required if name not in value]
    return ([f"lacks field(s) {', '.join(missing)}"] if missing else []) + [
        f"field '{section}.{name}' must be {rule}, not {json.dumps(value[name])[:40]}"
        for name, rule, ok in rules if name in value and not ok(value[name])]


def record_problems(manifest: Mapping[str, Any]) -> list[str]:
    """Every malformed record field of a manifest that has a ``training`` field (none without one)."""
    if "training" not in manifest:
        return []
    every = tuple(name for name, _, _ in _TRAINING if name not in _OPTIONAL_TRAINING)
    problems = _section_problems("training", manifest["training"], _TRAINING, every)
    problems += _section_problems("model", manifest.get("model"), _MODEL, ("id",))
    if manifest.get("layer_selection") is not None:
        problems += _section_problems("layer_selection", manifest["layer_selection"], _CURVE,
                                      tuple(name for name, _, _ in _CURVE))
    return problems


def record_from_manifest(manifest: Mapping[str, Any]) -> TrainingRecord | None:
    """The typed record of a manifest without ``record_problems`` (None when it has no ``training`` field)."""
    if "training" not in manifest:
        return None
    training, model, curve = manifest["training"], manifest["model"], manifest.get("layer_selection")
    return TrainingRecord(
        model=ModelIdentity(model["id"], model.get("fingerprint"), model.get("n_layers")),
        method=training["method"],
        pooling=PoolingSpec(training["pooling"], training["skip_tokens"], training["chat_template"],
                            training["max_length"]),
        forward_dtype=training["forward_dtype"],
        counts={concept: (row["positive"], row["negative"]) for concept, row in training["counts"].items()},
        n_unique_texts=training["n_unique_texts"], data_sha256=training["data_sha256"], split=training["split"],
        layer_curve=LayerCurve.from_json(curve) if curve is not None else None,
        world_size=training.get("world_size", 1),
        shrinkage={int(layer): float(alpha) for layer, alpha in training["shrinkage"].items()}
        if "shrinkage" in training else None,
        neutral_pcs=training.get("neutral_pcs", 0), lexical=training.get("lexical", "none"))
