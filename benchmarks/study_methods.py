"""Which pooling, direction method, preprocessing and layers separate the bundled sample's emotions best?

Pools the train and held-out texts once per pooling rule at every layer of the model (cached with
``--cache-dir``), then compares every variant on those activations without running the model again. Per variant:

- ``cv``: mean validation AUROC at the chosen layers from ``layer_selection.layer_curve`` (4 folds by node over
  the train split only): the figure a default may honestly be chosen by;
- ``auroc`` / ``min``: mean and minimum held-out AUROC over (concept, layer) at the chosen layers, directions
  fitted on the whole train split (as ``amygdala train`` does), as ``amygdala eval`` reports them;
- ``top1`` / ``top3``: filtered N-way rank of the true concept by the mean calibrated z over the chosen layers;
- ``random``: held-out AUROC of seeded random unit directions (chance baseline).

Layers: ``default`` = ``training.default_target_layers``; ``auto`` = the best 4 of the train-only layer curve.
Methods: ``directions.DIRECTION_METHODS``, plus ``lda_diagonal`` at other shrinkages (``lda_diagonal@0.5``).
Preprocessing ``pcN`` projects the top N principal components of the train texts' activations (per layer; no
labels used) out of the activations before fitting; ``neutralN`` takes them from the train texts that are a
positive for no concept. Because ``x·(P v) = (P x)·v``, such a vector is an ordinary readout vector ``P v``.
Two references that are not readout methods close the table: a TF-IDF logistic regression on the words alone
(what the text gives without the model) and an L2 logistic-regression probe on the best pooling's activations.

Usage: ``python benchmarks/study_methods.py [--examples-dir DIR] [--model default] [--cache-dir DIR]``
(without ``--examples-dir``: extracts the bundled sample graph with the default extract options).
Prints a table, then one JSON line with every row.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from amygdala.activation_cache import ActivationCache
from amygdala.directions import DIRECTION_METHODS, ConceptStats, DirectionMethod, fit_directions, lda_diagonal
from amygdala.examples import Example, ExtractOptions, read_examples
from amygdala.extraction import select_examples
from amygdala.layer_selection import layer_curve
from amygdala.metrics import filtered_ranks, random_unit_directions, separation
from amygdala.models import LoadedModel, load_model
from amygdala.pooling import PoolingSpec, pool_texts
from amygdala.sources.graph_file import bundled_sample_path, read_graph_file
from amygdala.splits import LabelledTexts, labelled_texts
from amygdala.training import default_target_layers

POOLINGS = (("last", 0), ("mean", 0), ("mean", 1))
PREPROCESSING = ("none", "pc1", "pc4", "pc16", "neutral4")
SEED = 0
PROBE_C = 0.03


def _shrunk(alpha: float) -> DirectionMethod:
    def method(stats: ConceptStats, layer: int) -> torch.Tensor:
        return lda_diagonal(stats, layer, alpha)

    method.__name__ = f"lda_diagonal@{alpha:g}"
    return method


METHODS: tuple[str | DirectionMethod, ...] = (*DIRECTION_METHODS, _shrunk(0.5), _shrunk(0.97))


def load_examples(examples_dir: Path | None) -> list[Example]:
    if examples_dir is not None:
        return read_examples(examples_dir)
    selection = select_examples(read_graph_file(bundled_sample_path()), ExtractOptions())
    return [example for emotion in selection.emotions for example in selection.examples[emotion]]


def principal_components(pooled: torch.Tensor, count: int) -> torch.Tensor:
    """Top ``count`` principal directions per layer of ``pooled [n, L, H]`` -> ``[L, count, H]``."""
    centred = pooled.double() - pooled.double().mean(dim=0)
    return torch.stack([torch.linalg.svd(centred[:, i], full_matrices=False).Vh[:count]
                        for i in range(pooled.shape[1])]).float()


def project_out(pooled: torch.Tensor, components: torch.Tensor | None) -> torch.Tensor:
    """``x - (x·U)Uᵀ`` per layer, for orthonormal rows ``U = components [L, k, H]``."""
    if components is None:
        return pooled
    coefficients = torch.einsum("nlh,lkh->nlk", pooled, components)
    return pooled - torch.einsum("nlk,lkh->nlh", coefficients, components)


def components_for(name: str, train_pooled: torch.Tensor, train: LabelledTexts) -> torch.Tensor | None:
    """The components a preprocessing name projects out, or None."""
    if name == "none":
        return None
    if name.startswith("neutral"):
        neutral = (~train.positive.any(dim=1)).nonzero().flatten().tolist()
        return principal_components(train_pooled[neutral], int(name.removeprefix("neutral")))
    return principal_components(train_pooled, int(name.removeprefix("pc")))


def _figures(raw: torch.Tensor, train_raw: torch.Tensor, random_raw: torch.Tensor,
             held: LabelledTexts) -> dict[str, float]:
    """Mean/min held-out AUROC, top-1/top-3 (mean calibrated z), random baseline, from ``[n, L, C]`` scores."""
    z = (raw - train_raw.mean(dim=0)) / train_raw.std(dim=0, correction=0)
    aurocs = [a for i in range(raw.shape[1]) for a in separation(raw[:, i], held)[0] if not math.isnan(a)]
    randoms = [a for i in range(raw.shape[1]) for a in separation(random_raw[:, i], held)[0] if not math.isnan(a)]
    _, ranks, _ = filtered_ranks(z.mean(dim=1), held)
    return {"auroc": sum(aurocs) / len(aurocs), "min": min(aurocs),
            "top1": sum(r <= 1 for r in ranks) / len(ranks), "top3": sum(r <= 3 for r in ranks) / len(ranks),
            "random": sum(randoms) / len(randoms)}


def heldout_figures(train_pooled: torch.Tensor, held_pooled: torch.Tensor, train: LabelledTexts,
                    held: LabelledTexts, concepts: Sequence[str], layers: Sequence[int],
                    method: str | DirectionMethod) -> dict[str, float]:
    """Fit on the whole train split at ``layers`` (indices = layer numbers here), measure on held-out."""
    layers = list(layers)
    vectors = fit_directions(train_pooled[:, layers], train, layers, method)
    stacked = torch.stack([vectors[layer] for layer in layers])
    randoms = random_unit_directions(len(layers), len(concepts), stacked.shape[-1], SEED)
    return _figures(torch.einsum("nlh,lch->nlc", held_pooled[:, layers], stacked),
                    torch.einsum("nlh,lch->nlc", train_pooled[:, layers], stacked),
                    torch.einsum("nlh,lch->nlc", held_pooled[:, layers], randoms), held)


def _rows_for_pooling(label: str, train_pooled: torch.Tensor, held_pooled: torch.Tensor, train: LabelledTexts,
                      held: LabelledTexts, concepts: Sequence[str], n_layers: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for prep in PREPROCESSING:
        components = components_for(prep, train_pooled, train)
        fit_pooled, test_pooled = project_out(train_pooled, components), project_out(held_pooled, components)
        for method in METHODS:
            curve = layer_curve(fit_pooled, train, list(range(n_layers)), method=method, seed=SEED)
            for rule, layers in (("default", default_target_layers(n_layers)), ("auto", curve.chosen)):
                figures = heldout_figures(fit_pooled, test_pooled, train, held, concepts, layers, method)
                rows.append({"pooling": label, "prep": prep, "method": getattr(method, "__name__", method),
                             "layers_rule": rule, "layers": list(layers),
                             "cv": sum(curve.mean_auroc[layer] for layer in layers) / len(layers), **figures})
                print_row(rows[-1])
    return rows


def _probe_scores(fit: np.ndarray, test: np.ndarray, train: LabelledTexts, *, standardise: bool = True,
                  c_value: float = PROBE_C) -> tuple[np.ndarray, np.ndarray]:
    """Decision values ``(train, test) [n, C]`` of one L2 logistic regression per concept."""
    mean, std = (fit.mean(axis=0), fit.std(axis=0) + 1e-8) if standardise else (0.0, 1.0)
    out_fit, out_test = np.zeros((len(fit), train.positive.shape[1])), np.zeros((len(test), train.positive.shape[1]))
    for c in range(train.positive.shape[1]):
        rows = (train.positive[:, c] | train.negative[:, c]).numpy()
        probe = LogisticRegression(C=c_value, max_iter=5000).fit(((fit - mean) / std)[rows], train.positive[rows, c])
        out_fit[:, c] = probe.decision_function((fit - mean) / std)
        out_test[:, c] = probe.decision_function((test - mean) / std)
    return out_fit, out_test


def reference_rows(train_pooled: torch.Tensor, held_pooled: torch.Tensor, train: LabelledTexts,
                   held: LabelledTexts, layers: Sequence[int], label: str, rule: str) -> list[dict[str, object]]:
    """The two references: TF-IDF words only, and a logistic probe at ``layers`` (same figures as the rest)."""
    words = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2)).fit(train.texts)
    fit_w, test_w = _probe_scores(words.transform(train.texts).toarray(), words.transform(held.texts).toarray(), train,
                                  standardise=False, c_value=10.0)
    probe = [_probe_scores(train_pooled[:, layer].double().numpy(), held_pooled[:, layer].double().numpy(), train)
             for layer in layers]
    rows = []
    for name, fit, test, layers_rule in (("tfidf-words", [fit_w], [test_w], "-"), ("logistic-probe", *zip(*probe), rule)):
        raw, train_raw = torch.tensor(np.stack(test, axis=1)), torch.tensor(np.stack(fit, axis=1))
        random_raw = torch.randn(raw.shape, generator=torch.Generator().manual_seed(SEED), dtype=raw.dtype)
        rows.append({"pooling": label if name != "tfidf-words" else "-", "prep": "reference", "method": name,
                     "layers_rule": layers_rule, "layers": list(layers) if name != "tfidf-words" else [], "cv": math.nan,
                     **_figures(raw, train_raw, random_raw, held)})
        print_row(rows[-1])
    return rows


def study(loaded: LoadedModel, examples: list[Example], cache: ActivationCache | None) -> list[dict[str, object]]:
    concepts = sorted({example.emotion for example in examples})
    train, held = labelled_texts(examples, concepts, "train"), labelled_texts(examples, concepts, "heldout")
    rows: list[dict[str, object]] = []
    pooled_by_label = {}
    for pooling, skip in POOLINGS:
        started = time.perf_counter()
        pooled = pool_texts(loaded, train.texts + held.texts, list(range(loaded.n_layers)), PoolingSpec(pooling, skip),
                            cache=cache, progress=sys.stderr.isatty())
        print(f"pooled {pooling} skip={skip}: {time.perf_counter() - started:.1f}s", file=sys.stderr)
        label = pooling if not skip else f"{pooling}-skip{skip}"
        pooled_by_label[label] = pooled[:len(train.texts)], pooled[len(train.texts):]
        rows += _rows_for_pooling(label, *pooled_by_label[label], train, held, concepts, loaded.n_layers)
    best = max((r for r in rows if r["prep"] == "none"), key=lambda r: r["cv"])
    return rows + reference_rows(*pooled_by_label[best["pooling"]], train, held, best["layers"], best["pooling"],
                                 str(best["layers_rule"]))


HEADER = (f"{'pooling':<12}{'prep':<10}{'method':<22}{'layers':<22}{'cv':>7}{'auroc':>7}{'min':>7}{'top1':>7}"
          f"{'top3':>7}{'random':>8}")


def print_row(row: dict[str, object]) -> None:
    layers = f"{row['layers_rule']} {','.join(map(str, row['layers']))}"
    print(f"{row['pooling']:<12}{row['prep']:<10}{row['method']:<22}{layers:<22}{row['cv']:>7.3f}{row['auroc']:>7.3f}"
          f"{row['min']:>7.3f}{row['top1']:>7.3f}{row['top3']:>7.3f}{row['random']:>8.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--examples-dir", type=Path, default=None)
    parser.add_argument("--model", default="default")
    parser.add_argument("--cache-dir", type=Path, default=None, help="activation cache (reruns skip the model)")
    args = parser.parse_args()
    loaded = load_model(args.model)
    examples = load_examples(args.examples_dir)
    print(HEADER)
    rows = study(loaded, examples, ActivationCache(args.cache_dir) if args.cache_dir else None)
    best = max((row for row in rows if not math.isnan(row["cv"])), key=lambda row: (row["cv"], row["auroc"]))
    print("best by train-only cv:", json.dumps(best))
    clean = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()} for row in rows]
    print(json.dumps({"model": loaded.model_id, "n_examples": len(examples), "rows": clean, "best_by_cv": best}))


if __name__ == "__main__":
    main()
