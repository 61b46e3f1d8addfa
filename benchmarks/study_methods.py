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
(``NEUTRAL_PCS``, ``amygdala.neutral`` through ``fit_directions(neutral_pcs=...)``) x layer rule
(``layer_rules``: ``default`` = ``training.default_target_layers``, ``mid`` / ``late`` = four consecutive layers
at 30% depth / at the end). Every text (sample and sentences) is pooled once per pooling rule at every layer
(cached with ``--cache-dir``); all variants reuse those activations.

The crossed rows (``crossed_valence``, default method and layers) fit the vectors on one pooling's rows and
pool the sentences by another, to tell whether a pooling's valence rho comes from its vectors or from how it
pools the sentences.

Beside the estimators that choose the diagonal shrinkage from the data (``lda_oas``, ``lda_rblw``), a sweep
of fixed shrinkages (``lda_diagonal@α``, ``SHRINKAGE_SWEEP``) runs at the default pooling, layers and no
neutral PCs.

A default may change only where both figures agree: ``agree`` lists the variants whose CV mean AUROC and
valence rho are both above the current defaults' row.

Usage: ``python benchmarks/study_methods.py [--cache-dir DIR] [--model default] [--quick]``. Prints a table,
then one JSON line with every row.
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

from amygdala.activation_cache import ActivationCache
from amygdala.crossval import cross_validate
from amygdala.directions import (
    DEFAULT_METHOD,
    DIRECTION_METHODS,
    ConceptStats,
    DirectionMethod,
    fit_directions,
    lda_diagonal,
)
from amygdala.examples import Example, ExtractOptions
from amygdala.extraction import select_examples
from amygdala.models import LoadedModel, load_model
from amygdala.pooling import PoolingSpec, pool_texts
from amygdala.sources.graph_file import bundled_sample_path, read_graph_file
from amygdala.splits import LabelledTexts, labelled_texts
from amygdala.training import DEFAULT_NEUTRAL_PCS, default_target_layers
from amygdala.valence import RatedSentences, concept_valence, rated_sentences, valence_check

POOLINGS = (("mean", 1), ("mean", 0), ("last", 0), ("mean_last", 1))
NEUTRAL_PCS = (0, 4)
FOLDS, SEED, N_BOOT = 5, 0, 1000
DEFAULT_POOLING = "mean-skip1"
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


def variant_row(pooled: torch.Tensor, data: LabelledTexts, corpus_pooled: torch.Tensor, corpus: RatedSentences,
                layers: Sequence[int], method: str | DirectionMethod, neutral_pcs: int, n_boot: int) -> dict[str, Any]:
    """The CV and valence figures of one variant (``pooled`` / ``corpus_pooled`` hold every layer)."""
    layers = list(layers)
    def fit(part_pooled: torch.Tensor, part: LabelledTexts) -> dict[int, torch.Tensor]:
        return fit_directions(part_pooled, part, layers, method, neutral_pcs=neutral_pcs)

    cv = cross_validate(pooled[:, layers], data, data.keys, layers, folds=FOLDS, seed=SEED, fit=fit, n_boot=n_boot)
    vectors = fit(pooled[:, layers], data)
    valence = valence_check(vectors, data.concepts, layers, corpus_pooled[:, layers], corpus, n_boot=n_boot, seed=SEED)
    return {**cv.summary(), "valence_rho": valence.rho.estimate, "valence_rho_ci": [valence.rho.low, valence.rho.high],
            "vader_rho": valence.vader_rho, "pc1_r": valence.pc1_r,
            "magnitude_rho": magnitude_axis_rho(vectors, data.concepts, layers, corpus_pooled[:, layers], corpus)}


HEADER = (f"{'pooling':<16}{'method':<14}{'npc':>4} {'layers':<20}{'cv auroc [95% CI]':<22}{'top1 [95% CI]':<22}"
          f"{'top3':>6}{'random':>8}  {'valence rho [95% CI]':<22}{'pc1 r':>6}{'mag rho':>8}")


def _ci(row: dict[str, Any], name: str) -> str:
    low, high = row[f"{name}_ci"]
    return f"{row[name]:.3f} [{low:.3f}, {high:.3f}]"


def print_row(row: dict[str, Any]) -> None:
    layers = f"{row['layers_rule']} {','.join(map(str, row['layers']))}"
    print(f"{row['pooling']:<16}{row['method']:<14}{row['neutral_pcs']:>4} {layers:<20}{_ci(row, 'mean_auroc'):<22}"
          f"{_ci(row, 'top1'):<22}{row['top3']:>6.3f}{row['random_mean_auroc']:>8.3f}  {_ci(row, 'valence_rho'):<22}"
          f"{row['pc1_r']:>6.3f}{row['magnitude_rho']:>8.3f}", flush=True)


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


def last_weight_rows(pooled_by: dict[str, tuple[torch.Tensor, torch.Tensor]], data: LabelledTexts,
                     corpus: RatedSentences, layers: Sequence[int], n_boot: int) -> list[dict[str, Any]]:
    """``mean_last`` at other weights of the last token (default method and layers): the rule is linear, so
    mixing the mean-skip1 and last rows equals pooling with that weight."""
    (mean, corpus_mean), (last, corpus_last) = pooled_by[DEFAULT_POOLING], pooled_by["last"]
    rows = []
    for weight in LAST_WEIGHT_SWEEP:
        rows.append({"pooling": f"mean_last@{weight:g}", "method": DEFAULT_METHOD, "neutral_pcs": 0,
                     "layers_rule": "default", "layers": list(layers),
                     **variant_row((1 - weight) * mean + weight * last, data,
                                   (1 - weight) * corpus_mean + weight * corpus_last, corpus, layers,
                                   DEFAULT_METHOD, 0, n_boot)})
        print_row(rows[-1])
    return rows


def study(loaded: LoadedModel, cache: ActivationCache | None, *,
          quick: bool = False) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every variant's row, then the crossed valence rows (``crossed_valence``, default method and layers)."""
    examples = sample_examples()
    data = labelled_texts(examples, sorted({example.emotion for example in examples}), None)
    corpus = rated_sentences(100 if quick else None)
    all_layers = list(range(loaded.n_layers))
    rows: list[dict[str, Any]] = []
    pooled_by: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for pooling, skip in POOLINGS[:1] if quick else POOLINGS:
        started = time.perf_counter()
        spec = PoolingSpec(pooling, skip)
        pooled = pool_texts(loaded, data.texts, all_layers, spec, cache=cache, progress=sys.stderr.isatty())
        corpus_pooled = pool_texts(loaded, corpus.texts, all_layers, spec, cache=cache, progress=sys.stderr.isatty())
        print(f"pooled {pooling} skip={skip}: {time.perf_counter() - started:.1f}s", file=sys.stderr)
        label = pooling if not skip else f"{pooling}-skip{skip}"
        pooled_by[label] = (pooled, corpus_pooled)
        for method in ("diff_of_means", DEFAULT_METHOD) if quick else DIRECTION_METHODS:
            for neutral_pcs in NEUTRAL_PCS:
                for rule, layers in layer_rules(loaded.n_layers).items():
                    rows.append({"pooling": label, "method": method, "neutral_pcs": neutral_pcs, "layers_rule": rule,
                                 "layers": list(layers), **variant_row(pooled, data, corpus_pooled, corpus, layers,
                                                                       method, neutral_pcs, 100 if quick else N_BOOT)})
                    print_row(rows[-1])
        if label == DEFAULT_POOLING:
            layers = layer_rules(loaded.n_layers)["default"]
            for alpha in SHRINKAGE_SWEEP[:1] if quick else SHRINKAGE_SWEEP:
                rows.append({"pooling": label, "method": f"lda_diagonal@{alpha:g}", "neutral_pcs": 0,
                             "layers_rule": "default", "layers": list(layers),
                             **variant_row(pooled, data, corpus_pooled, corpus, layers, fixed_shrinkage(alpha), 0,
                                           100 if quick else N_BOOT)})
                print_row(rows[-1])
    default_layers, n_boot = layer_rules(loaded.n_layers)["default"], 100 if quick else N_BOOT
    if "last" in pooled_by:
        rows += last_weight_rows(pooled_by, data, corpus, default_layers, n_boot)
    crossed = crossed_valence(pooled_by, data, corpus, default_layers, n_boot)
    return rows, crossed


def agreeing(rows: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The current defaults' row, and the rows above it on both the CV mean AUROC and the valence rho."""
    current = next((row for row in rows if (row["pooling"], row["method"], row["neutral_pcs"], row["layers_rule"])
                    == (DEFAULT_POOLING, DEFAULT_METHOD, DEFAULT_NEUTRAL_PCS, "default")), None)
    if current is None:
        return None, []
    better = [row for row in rows if row["mean_auroc"] > current["mean_auroc"]
              and row["valence_rho"] > current["valence_rho"]]
    return current, sorted(better, key=lambda row: -(row["mean_auroc"] + row["valence_rho"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--cache-dir", default=None, help="activation cache (reruns skip the model)")
    parser.add_argument("--quick", action="store_true", help="one pooling, two methods, 100 sentences: a smoke run")
    args = parser.parse_args()
    loaded = load_model(args.model)
    print(HEADER)
    started = time.perf_counter()
    rows, crossed = study(loaded, ActivationCache(args.cache_dir) if args.cache_dir else None, quick=args.quick)
    current, better = agreeing(rows)
    print(f"defaults' row: {json.dumps(current)}\nbetter on both figures: {len(better)}")
    for row in better:
        print_row(row)
    clean = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()} for row in rows]
    print(json.dumps({"model": loaded.model_id, "n_texts": rows[0]["n_texts"] if rows else 0, "folds": FOLDS,
                      "seconds": round(time.perf_counter() - started, 1), "rows": clean, "crossed": crossed, "defaults": current,
                      "agree": better}))


if __name__ == "__main__":
    main()
