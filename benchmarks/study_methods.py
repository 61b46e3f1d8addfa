"""Which pooling, direction method, neutral-direction removal and layers give the best readout vectors?

Two figures per variant, both with bootstrap 95% CIs, on the bundled sample and the embedded model:

- **5-fold CV** (``crossval.cross_validate``, by node, every text scored once by vectors that never saw it):
  mean AUROC over concepts of the out-of-fold mean z over the variant's layers, top-1 / top-3 among the
  concepts, and the random-direction baseline;
- **valence check** (``valence.valence_check``): vectors fitted on every text of the sample, their valence axis
  against human ratings of 600 movie-review sentences (Spearman rho; VADER's own rho is the reference), and
  |r| of PC1 of the concept vectors against the concepts' lexicon valence; ``magnitude_rho`` is the same rho
  with the axis weighted by each covered concept's lexicon valence (``magnitude_axis_rho``) instead of by sign.

``mean_last`` (``pooling.pool_mean_last``) also runs at other weights of the last token (``LAST_WEIGHT_SWEEP``,
``mean_last@w``) at the default method and layers.

Variants: pooling ``POOLINGS`` x method (every ``directions.DIRECTION_METHODS``) x neutral PCs removed
(``NEUTRAL_PCS``, ``amygdala.training.neutral`` through ``fit_directions(neutral_pcs=...)``) x layer rule
(``layer_rules``: ``default`` = ``training.default_target_layers``, ``mid`` / ``late`` = four consecutive layers
at 30% depth / at the end). Every text (sample and sentences) is pooled once per pooling rule at every layer
(cached with ``--cache-dir``); all variants reuse those activations.

The crossed rows (``crossed_valence``, default method and layers) fit the vectors on one pooling's rows and
pool the sentences by another, to tell whether a pooling's valence rho comes from its vectors or from how it
pools the sentences.

Beside the estimators that choose the diagonal shrinkage from the data (``lda_oas``, ``lda_rblw``), a sweep
of fixed shrinkages (``lda_diagonal@α``, ``SHRINKAGE_SWEEP``) runs at the default pooling, layers and no
neutral PCs.

The defaults' row follows the library: ``PoolingSpec()``, ``DEFAULT_METHOD``, ``DEFAULT_NEUTRAL_PCS`` and the
``default`` layer rule. **Paired** comparisons (``PAIRED``: the old default ``mean`` pooling, ``last``,
``mean_last@0.3``, the ``mid`` layers, 4 neutral PCs) give a variant's figure minus the defaults' over the SAME
bootstrap draws (``crossval.paired_cv``: the same node draws for mean AUROC and top-1; ``valence.paired_rho``:
the same sentence draws for rho), with the 95% CI of the difference. A default may change only where the
figures agree: ``agree`` lists the variants (every row, paired with the defaults' row) with one of mean AUROC,
top-1 and valence rho better beyond noise (paired CI above 0) and none worse beyond noise (no paired CI below 0).

Every row also carries the battery's figures (``study_battery``: lexical control FPR, arousal check, PC1/PC2, and
any ``study_battery.HOOKS``), and is fitted with the library's default lexical rule (``TrainOptions.lexical``);
``lexical_rows`` give the other rules, paired against the defaults on five figures (``PAIRED_FIGURES``; the lexical
FPR is better when lower).

Usage: ``python benchmarks/study_methods.py [--cache-dir DIR] [--model default] [--quick] [--paired-only]
[--lexical-only]``.
Prints a table, the paired table, then one JSON line with every row and the paired comparisons.
``--paired-only`` scores just the defaults' row and the ``PAIRED`` variants (a few minutes, not the whole study).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch
from scipy.stats import spearmanr

from amygdala.evaluation.arousal import ArousalCheck, paired_arousal_rho
from amygdala.evaluation.crossval import CrossValidation, Fit, cross_validate, paired_cv
from amygdala.evaluation.lexical_control import LexicalControl, paired_fpr
from amygdala.evaluation.metrics import PairedDifference
from amygdala.evaluation.valence import (
    RatedSentences,
    ValenceCheck,
    concept_valence,
    paired_rho,
    rated_sentences,
    valence_check,
)
from amygdala.extraction.examples import Example
from amygdala.extraction.scoring import ExtractOptions
from amygdala.extraction.sources.graph_file import bundled_sample_path, read_graph_file
from amygdala.extraction.stage import select_examples
from amygdala.forward.activation_cache import ActivationCache
from amygdala.forward.models import LoadedModel, load_model
from amygdala.forward.pooled import pool_texts
from amygdala.forward.pooling import PoolingSpec
from amygdala.training.directions import (
    DEFAULT_METHOD,
    DIRECTION_METHODS,
    DirectionMethod,
    fit_directions,
    lda_diagonal,
)
from amygdala.training.lexical import DEFAULT_LEXICAL, LEXICAL_RULES
from amygdala.training.splits import LabelledTexts, labelled_texts
from amygdala.training.stage import DEFAULT_NEUTRAL_PCS, default_target_layers
from amygdala.training.statistics import ConceptStats
from study_battery import Battery


def pooling_label(spec: PoolingSpec) -> str:
    """``mean-skip1``, ``last``, ...: the rule, and the leading tokens it skips if any."""
    return f"{spec.pooling}-skip{spec.skip}" if spec.skip else spec.pooling


POOLINGS = (("mean", 1), ("mean", 0), ("last", 0), ("mean_last", 1))
NEUTRAL_PCS = (0, 4)
FOLDS, SEED, N_BOOT = 5, 0, 1000
DEFAULT_POOLING = pooling_label(PoolingSpec())
MEAN_POOLING = "mean-skip1"
assert DEFAULT_POOLING in {pooling_label(PoolingSpec(rule, skip)) for rule, skip in POOLINGS}
RowKey = tuple[str, str, int, str]
"""A row's pooling label, method name, neutral PCs removed and layer rule."""
DEFAULTS: RowKey = (DEFAULT_POOLING, DEFAULT_METHOD, DEFAULT_NEUTRAL_PCS, "default")
PAIRED: dict[str, RowKey] = {
    "mean (old default)": (MEAN_POOLING, DEFAULT_METHOD, DEFAULT_NEUTRAL_PCS, "default"),
    "last": ("last", DEFAULT_METHOD, DEFAULT_NEUTRAL_PCS, "default"),
    "mean_last@0.3": ("mean_last@0.3", DEFAULT_METHOD, DEFAULT_NEUTRAL_PCS, "default"),
    "mid layers": (DEFAULT_POOLING, DEFAULT_METHOD, DEFAULT_NEUTRAL_PCS, "mid"),
    "neutral PCs 4": (DEFAULT_POOLING, DEFAULT_METHOD, 4, "default"),
    **{f"lexical {rule}": (DEFAULT_POOLING, f"{DEFAULT_METHOD}+{rule}", DEFAULT_NEUTRAL_PCS, "default")
       for rule in ("none", "project", "both")},
}
LEXICAL_RULES_STUDIED = tuple(rule for rule in LEXICAL_RULES if rule != DEFAULT_LEXICAL)
PAIRED_FIGURES = ("mean_auroc", "top1", "valence_rho", "lexical_fpr", "arousal_rho")
LOWER_IS_BETTER = frozenset({"lexical_fpr"})
SHRINKAGE_SWEEP = (0.5, 0.8, 0.95, 0.99, 1.0)
LAST_WEIGHT_SWEEP = (0.1, 0.3, 0.5)


def fixed_shrinkage(alpha: float) -> DirectionMethod:
    """``lda_diagonal`` at shrinkage ``alpha``."""
    def method(stats: ConceptStats, layer: int) -> torch.Tensor:
        return lda_diagonal(stats, layer, alpha)

    return method


def layer_rules(n_layers: int) -> dict[str, tuple[int, ...]]:
    mid = round(0.3 * (n_layers - 1))
    return {"default": default_target_layers(n_layers), "mid": tuple(range(mid, mid + 4)),
            "late": tuple(range(n_layers - 4, n_layers))}


def sample_examples() -> list[Example]:
    """The bundled sample graph, extracted with the default extract options."""
    selection = select_examples(read_graph_file(bundled_sample_path()), ExtractOptions())
    return [example for emotion in selection.emotions for example in selection.examples[emotion]]


def magnitude_axis_rho(vectors: dict[int, torch.Tensor], concepts: Sequence[str], layers: Sequence[int],
                       corpus_pooled: torch.Tensor, corpus: RatedSentences) -> float:
    """The valence check's rho with the axis weighted by lexicon valence (sum over covered concepts of valence x
    vector) instead of the mean of the positive minus the mean of the negative concepts' vectors."""
    valence = concept_valence([c for c in concepts if bool(vectors[layers[0]][concepts.index(c)].isfinite().all())])
    projections = []
    for position, layer in enumerate(layers):
        axis = sum(weight * vectors[layer][concepts.index(c)].double() for c, weight in valence.items())
        projection = corpus_pooled[:, position].double() @ axis
        projections.append((projection - projection.mean()) / projection.std(correction=0))
    return float(spearmanr(torch.stack(projections).mean(dim=0).numpy(), corpus.ratings).statistic)


Fits = dict[RowKey, tuple[CrossValidation, ValenceCheck, LexicalControl, ArousalCheck]]
"""Every scored row's cross-validation, valence check, lexical control and arousal check (paired comparisons)."""


def row_key(row: dict[str, Any]) -> RowKey:
    return row["pooling"], row["method"], row["neutral_pcs"], row["layers_rule"]


def variant_row(pooled: torch.Tensor, data: LabelledTexts, corpus_pooled: torch.Tensor, corpus: RatedSentences,
                layers: Sequence[int], method: str | DirectionMethod, neutral_pcs: int, n_boot: int,
                label: dict[str, Any], fits: Fits, battery: Battery, lexical: str = DEFAULT_LEXICAL) -> dict[str, Any]:
    """The CV, valence and battery figures of one variant (``pooled`` / ``corpus_pooled`` hold every layer),
    after the ``label`` fields (pooling, method, neutral_pcs, layers_rule, layers); ``lexical``: the training
    option's rule (``study_battery.Battery.lexical_fit``); its results go into ``fits``."""
    layers = list(layers)
    fit: Fit = battery.lexical_fit(method, lexical, label["pooling"], layers, neutral_pcs)
    control_pooled = battery.pooled[label["pooling"]].control[:, layers]
    cv = cross_validate(pooled[:, layers], data, data.keys, layers, folds=FOLDS, seed=SEED, fit=fit, n_boot=n_boot,
                        extra=control_pooled)
    vectors = fit(pooled[:, layers], data)
    valence = valence_check(vectors, data.concepts, layers, corpus_pooled[:, layers], corpus, n_boot=n_boot, seed=SEED)
    extra, control, arousal = battery.figures(cv, data, vectors, layers, label["pooling"], n_boot, SEED)
    fits[row_key(label)] = cv, valence, control, arousal
    return {**label, **cv.summary(), "valence_rho": valence.rho.estimate, "valence_rho_ci": [valence.rho.low, valence.rho.high],
            "vader_rho": valence.vader_rho, "pc1_r": valence.pc1_r,
            "magnitude_rho": magnitude_axis_rho(vectors, data.concepts, layers, corpus_pooled[:, layers], corpus),
            **extra}


HEADER = (f"{'pooling':<16}{'method':<14}{'npc':>4} {'layers':<20}{'cv auroc [95% CI]':<22}{'top1 [95% CI]':<22}"
          f"{'top3':>6}{'random':>8}  {'valence rho [95% CI]':<22}{'pc1 r':>6}{'mag rho':>8}  {'lexical fpr [95% CI]':<22}"
          f"{'arousal rho [95% CI]':<23}{'pc2 ar':>7}")


def _ci(row: dict[str, Any], name: str) -> str:
    low, high = row[f"{name}_ci"]
    return f"{row[name]:.3f} [{low:.3f}, {high:.3f}]"


def print_row(row: dict[str, Any]) -> None:
    layers = f"{row['layers_rule']} {','.join(map(str, row['layers']))}"
    print(f"{row['pooling']:<16}{row['method']:<14}{row['neutral_pcs']:>4} {layers:<20}{_ci(row, 'mean_auroc'):<22}"
          f"{_ci(row, 'top1'):<22}{row['top3']:>6.3f}{row['random_mean_auroc']:>8.3f}  {_ci(row, 'valence_rho'):<22}"
          f"{row['pc1_r']:>6.3f}{row['magnitude_rho']:>8.3f}  {_ci(row, 'lexical_fpr'):<22}{_ci(row, 'arousal_rho'):<23}"
          f"{row['pc2_arousal_r']:>7.3f}", flush=True)


def crossed_valence(pooled_by: dict[str, tuple[torch.Tensor, torch.Tensor]], data: LabelledTexts,
                    corpus: RatedSentences, layers: Sequence[int], n_boot: int) -> list[dict[str, Any]]:
    """Valence rho of the default method's vectors fitted on one pooling's rows, with the sentences pooled by
    each pooling: which side (the vectors or the sentences' pooling) makes a pooling's valence axis."""
    rows = []
    for fitted_on, (pooled, _) in pooled_by.items():
        vectors = fit_directions(pooled[:, list(layers)], data, layers, DEFAULT_METHOD)
        for sentences, (_, corpus_pooled) in pooled_by.items():
            check = valence_check(vectors, data.concepts, layers, corpus_pooled[:, list(layers)], corpus,
                                  n_boot=n_boot, seed=SEED)
            rows.append({"vectors": fitted_on, "sentences": sentences, "valence_rho": check.rho.estimate,
                         "valence_rho_ci": [check.rho.low, check.rho.high]})
            print(f"vectors {fitted_on:<16} sentences {sentences:<16} valence rho {_ci(rows[-1], 'valence_rho')}",
                  flush=True)
    return rows


def mixed_pooling(pooled_by: dict[str, tuple[torch.Tensor, torch.Tensor]],
                  weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``mean_last`` at last-token weight ``weight``: the rule is linear, so mixing the mean-skip1 and last rows
    (sample, sentences) equals pooling with that weight."""
    (mean, corpus_mean), (last, corpus_last) = pooled_by[MEAN_POOLING], pooled_by["last"]
    return (1 - weight) * mean + weight * last, (1 - weight) * corpus_mean + weight * corpus_last


def last_weight_rows(pooled_by: dict[str, tuple[torch.Tensor, torch.Tensor]], data: LabelledTexts,
                     corpus: RatedSentences, layers: Sequence[int], n_boot: int, fits: Fits, battery: Battery,
                     weights: Sequence[float] = LAST_WEIGHT_SWEEP) -> list[dict[str, Any]]:
    """``mean_last`` at other weights of the last token (default method and layers)."""
    rows = []
    for weight in weights:
        pooled, corpus_pooled = mixed_pooling(pooled_by, weight)
        label = {"pooling": f"mean_last@{weight:g}", "method": DEFAULT_METHOD, "neutral_pcs": DEFAULT_NEUTRAL_PCS,
                 "layers_rule": "default", "layers": list(layers)}
        battery.mix(label["pooling"], MEAN_POOLING, "last", weight)
        rows.append(variant_row(pooled, data, corpus_pooled, corpus, layers, DEFAULT_METHOD, DEFAULT_NEUTRAL_PCS,
                                n_boot, label, fits, battery))
        print_row(rows[-1])
    return rows


def lexical_rows(pooled: torch.Tensor, data: LabelledTexts, corpus_pooled: torch.Tensor, corpus: RatedSentences,
                 layers: Sequence[int], n_boot: int, fits: Fits, battery: Battery) -> list[dict[str, Any]]:
    """The training option ``TrainOptions.lexical`` at each studied rule (default pooling, method and layers)."""
    rows = []
    for rule in LEXICAL_RULES_STUDIED:
        label = {"pooling": DEFAULT_POOLING, "method": f"{DEFAULT_METHOD}+{rule}", "neutral_pcs": DEFAULT_NEUTRAL_PCS,
                 "layers_rule": "default", "layers": list(layers)}
        rows.append(variant_row(pooled, data, corpus_pooled, corpus, layers, DEFAULT_METHOD, DEFAULT_NEUTRAL_PCS,
                                n_boot, label, fits, battery, lexical=rule))
        print_row(rows[-1])
    return rows


def study(loaded: LoadedModel, cache: ActivationCache | None, *, quick: bool = False, paired_only: bool = False,
          lexical_only: bool = False) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Fits]:
    """Every variant's row (``paired_only``: the defaults' and the ``PAIRED`` variants' rows; ``lexical_only``: the
    defaults' and the lexical option's rows), the crossed valence rows (``crossed_valence``, default method and
    layers; none with ``paired_only`` or ``lexical_only``) and every row's results."""
    paired_only = paired_only or lexical_only
    examples = sample_examples()
    data = labelled_texts(examples, sorted({example.emotion for example in examples}), None)
    corpus = rated_sentences(100 if quick else None)
    battery = Battery.empty(data.concepts, quick)
    all_layers = list(range(loaded.n_layers))
    rules = layer_rules(loaded.n_layers)
    n_boot = 100 if quick else N_BOOT
    rows: list[dict[str, Any]] = []
    fits: Fits = {}
    pooled_by: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    wanted = {DEFAULTS} if lexical_only else {DEFAULTS, *PAIRED.values()}
    poolings = [(rule, skip) for rule, skip in POOLINGS if pooling_label(PoolingSpec(rule, skip)) == DEFAULT_POOLING] \
        if (quick and not paired_only) or lexical_only else POOLINGS
    for pooling, skip in poolings:
        spec = PoolingSpec(pooling, skip)
        label = pooling_label(spec)
        if paired_only and label not in {MEAN_POOLING, "last"} | {key[0] for key in wanted}:
            continue
        started = time.perf_counter()
        pooled = pool_texts(loaded, data.texts, all_layers, spec, cache=cache, progress=sys.stderr.isatty())
        corpus_pooled = pool_texts(loaded, corpus.texts, all_layers, spec, cache=cache, progress=sys.stderr.isatty())
        battery.prepare(loaded, label, spec, cache)
        print(f"pooled {label}: {time.perf_counter() - started:.1f}s", file=sys.stderr)
        pooled_by[label] = (pooled, corpus_pooled)
        methods: Sequence[str] = ("diff_of_means", DEFAULT_METHOD) if quick else DIRECTION_METHODS
        for method in methods:
            for neutral_pcs in NEUTRAL_PCS:
                for rule, layers in rules.items():
                    if paired_only and (label, method, neutral_pcs, rule) not in wanted:
                        continue
                    row = {"pooling": label, "method": method, "neutral_pcs": neutral_pcs, "layers_rule": rule,
                           "layers": list(layers)}
                    rows.append(variant_row(pooled, data, corpus_pooled, corpus, layers, method, neutral_pcs,
                                            n_boot, row, fits, battery))
                    print_row(rows[-1])
        if label == DEFAULT_POOLING and not paired_only:
            for alpha in SHRINKAGE_SWEEP[:1] if quick else SHRINKAGE_SWEEP:
                row = {"pooling": label, "method": f"lda_diagonal@{alpha:g}", "neutral_pcs": 0,
                       "layers_rule": "default", "layers": list(rules["default"])}
                rows.append(variant_row(pooled, data, corpus_pooled, corpus, rules["default"],
                                        fixed_shrinkage(alpha), 0, n_boot, row, fits, battery))
                print_row(rows[-1])
        if label == DEFAULT_POOLING:
            rows += lexical_rows(pooled, data, corpus_pooled, corpus, rules["default"], n_boot, fits, battery)
    if MEAN_POOLING in pooled_by and "last" in pooled_by:
        weights = [float(key[0].split("@")[1]) for key in wanted if key[0].startswith("mean_last@")] if paired_only \
            else LAST_WEIGHT_SWEEP
        rows += last_weight_rows(pooled_by, data, corpus, rules["default"], n_boot, fits, battery, weights)
    crossed = [] if paired_only else crossed_valence(pooled_by, data, corpus, rules["default"], n_boot)
    return rows, crossed, fits


def paired_with_defaults(fits: Fits, key: RowKey) -> dict[str, PairedDifference] | None:
    """Row ``key``'s mean AUROC, top-1 and valence rho minus the defaults' row's, over the same bootstrap draws
    (None when either row was not scored)."""
    if key not in fits or DEFAULTS not in fits:
        return None
    (cv, valence, control, arousal), (default_cv, default_valence, default_control, default_arousal) = \
        fits[key], fits[DEFAULTS]
    cv_difference = paired_cv(cv, default_cv)
    return {"mean_auroc": cv_difference.mean_auroc, "top1": cv_difference.top1,
            "valence_rho": paired_rho(valence, default_valence),
            "lexical_fpr": paired_fpr(control, default_control, cv.n_boot, SEED),
            "arousal_rho": paired_arousal_rho(arousal, default_arousal)}


def agrees(paired: dict[str, PairedDifference]) -> bool:
    """One figure better beyond noise (paired CI above 0; below 0 for a lower-is-better figure, the lexical
    false-positive rate) and none worse beyond noise."""
    signs = [-paired[name].sign if name in LOWER_IS_BETTER else paired[name].sign for name in PAIRED_FIGURES]
    return max(signs) > 0 and min(signs) >= 0


def paired_summary(paired: dict[str, PairedDifference]) -> dict[str, Any]:
    return {name: difference.summary() for name, difference in paired.items()}


def agreeing(rows: list[dict[str, Any]], fits: Fits) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The current defaults' row, and the rows that ``agrees`` with against it (each with its ``paired``)."""
    current = next((row for row in rows if row_key(row) == DEFAULTS), None)
    better = []
    for row in rows:
        paired = paired_with_defaults(fits, row_key(row)) if row_key(row) != DEFAULTS else None
        if paired is not None and agrees(paired):
            better.append({**row, "paired": paired_summary(paired)})
    return current, sorted(better, key=lambda row: -sum(row["paired"][name]["difference"] for name in PAIRED_FIGURES[:3]))


def _difference(difference: PairedDifference) -> str:
    interval = difference.difference
    mark = {1: "+", -1: "-", 0: " "}[difference.sign]
    return f"{interval.estimate:+.3f} [{interval.low:+.3f}, {interval.high:+.3f}]{mark}"


def paired_table(fits: Fits) -> dict[str, Any]:
    """Print and return the ``PAIRED`` comparisons: each variant minus the defaults' row."""
    print(f"\npaired, variant minus the defaults ({' / '.join(map(str, DEFAULTS))}), same bootstrap draws; "
          "+/- after the CI: beyond noise")
    print(f"{'variant':<22}{'cv auroc diff [95% CI]':<28}{'top1 diff [95% CI]':<28}{'valence rho diff [95% CI]':<28}"
          f"{'lexical fpr diff [95% CI]':<28}{'arousal rho diff [95% CI]':<28}agree")
    table = {}
    for name, key in PAIRED.items():
        paired = paired_with_defaults(fits, key)
        if paired is None:
            continue
        table[name] = {"variant": list(key), **paired_summary(paired), "agree": agrees(paired)}
        print(f"{name:<22}{_difference(paired['mean_auroc']):<28}{_difference(paired['top1']):<28}"
              f"{_difference(paired['valence_rho']):<28}{_difference(paired['lexical_fpr']):<28}"
              f"{_difference(paired['arousal_rho']):<28}{'yes' if agrees(paired) else 'no'}", flush=True)
    return table


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--cache-dir", default=None, help="activation cache (reruns skip the model)")
    parser.add_argument("--quick", action="store_true", help="the default pooling, two methods, 100 sentences: a smoke run")
    parser.add_argument("--paired-only", action="store_true",
                        help="only the defaults' row and the paired variants (mean, last, mean_last@0.3, mid, 4 PCs, "
                             "the lexical option's rules)")
    parser.add_argument("--lexical-only", action="store_true",
                        help="only the default pooling: the defaults' row and the lexical option's rules")
    args = parser.parse_args()
    loaded = load_model(args.model)
    print(HEADER)
    started = time.perf_counter()
    rows, crossed, fits = study(loaded, ActivationCache(args.cache_dir) if args.cache_dir else None,
                                quick=args.quick, paired_only=args.paired_only, lexical_only=args.lexical_only)
    paired = paired_table(fits)
    current, better = agreeing(rows, fits)
    print(f"defaults' row: {json.dumps(_clean(current))}\nbetter beyond noise on one figure, worse on none: {len(better)}")
    for row in better:
        print_row(row)
    print(json.dumps(_clean({"model": loaded.model_id, "n_texts": rows[0]["n_texts"] if rows else 0, "folds": FOLDS,
                             "seconds": round(time.perf_counter() - started, 1), "rows": rows, "crossed": crossed,
                             "defaults": current, "paired": paired, "agree": better})))


if __name__ == "__main__":
    main()
