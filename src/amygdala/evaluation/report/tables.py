"""The evaluation's rich tables and summary lines for the terminal (NaN shows as ``-``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rich.table import Table
from rich.text import Text

from amygdala.artifact import LayerCurve
from amygdala.evaluation.crossval import CrossValidation
from amygdala.evaluation.metrics import Interval
from amygdala.evaluation.results import Evaluation
from amygdala.outputs.sanitise import terminal_line


def _name(text: str) -> Text:
    """A cell quoting a manifest's names: sanitised for the terminal, and a ``Text`` so rich parses no markup."""
    return Text(terminal_line(text))


def fmt(value: float, digits: int = 3) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def scores_by_concept(evaluation: Evaluation) -> dict[str, list[Any]]:
    rows: dict[str, list[Any]] = {concept: [] for concept in evaluation.concepts}
    for score in evaluation.scores:
        rows[score.concept].append(score)
    return rows


def concept_flags(evaluation: Evaluation) -> dict[str, list[str]]:
    """Per concept: ``≈partner cos`` (its highest cosine over the layers), then ``R² Lx,Ly`` if others explain it."""
    close: dict[str, dict[str, float]] = {concept: {} for concept in evaluation.concepts}
    explained: dict[str, list[int]] = {concept: [] for concept in evaluation.concepts}
    for crosstalk in evaluation.crosstalk:
        for a, b, cosine in crosstalk.close_pairs:
            for one, other in ((a, b), (b, a)):
                close[one][other] = max(cosine, close[one].get(other, -1.0))
        for concept in crosstalk.explained_concepts:
            explained[concept].append(crosstalk.layer)
    return {concept: [f"≈{other} {cosine:.2f}" for other, cosine in sorted(close[concept].items(),
                                                                         key=lambda item: -item[1])]
            + ([f"R² L{','.join(map(str, explained[concept]))}"] if explained[concept] else [])
            for concept in evaluation.concepts}


def mean_of(values: Sequence[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


def summary_table(evaluation: Evaluation) -> Table:
    """Per concept: held-out counts, AUROC (mean and min over layers), Cohen's d, random baseline, stability, and
    the lexical control's false-positive rate (``word FPR``; out-of-fold when cross-validated)."""
    summary = evaluation.summary()
    table = Table(title=f"held-out separation at layers {', '.join(map(str, evaluation.layers))}",
                  caption=(f"mean AUROC {fmt(summary['mean_auroc'])} (min {fmt(summary['min_auroc'])}), random "
                           f"{fmt(summary['random_mean_auroc'])}, top-1 {fmt(summary['top1'])}, top-3 "
                           f"{fmt(summary['top3'])}, stability {fmt(summary['mean_stability'])}"))
    word_fpr = _word_fpr(evaluation)
    for name in ("concept", "pos/neg", "AUROC", "min", "d", "random", "stability", "word FPR", "flags"):
        table.add_column(name, justify="left" if name in ("concept", "flags") else "right", no_wrap=name != "flags")
    flags = concept_flags(evaluation)
    for concept, scores in scores_by_concept(evaluation).items():
        aurocs = [s.auroc for s in scores]
        table.add_row(_name(concept), f"{scores[0].n_positive}/{scores[0].n_negative}", fmt(mean_of(aurocs)),
                      fmt(min((a for a in aurocs if not math.isnan(a)), default=math.nan)),
                      fmt(mean_of([s.cohens_d for s in scores]), 2), fmt(mean_of([s.random_auroc for s in scores])),
                      fmt(mean_of([s.stability for s in scores])), word_fpr.get(concept, "-"),
                      _name(" ".join(flags[concept][:2]) + (f" +{len(flags[concept]) - 2}"
                                                             if flags[concept][2:] else "")))
    return table


def _word_fpr(evaluation: Evaluation) -> dict[str, str]:
    """Per concept: the lexical control's false-positive rate (texts naming it above its 90%-TPR threshold)."""
    lexical = evaluation.lexical
    return {} if lexical is None else {c.concept: fmt(c.false_positive_rate, 2) for c in lexical.per_concept}


def ci(interval: Interval) -> str:
    return f"{fmt(interval.estimate)} [{fmt(interval.low)}, {fmt(interval.high)}]"


def crossval_table(crossval: CrossValidation) -> Table:
    """Per concept: out-of-fold AUROC with its 95% CI, the random baseline's, and the scored positives/negatives."""
    table = Table(title=f"{crossval.folds}-fold cross-validation by node ({len(crossval.fold)} texts, "
                        f"{crossval.n_nodes} nodes; out-of-fold mean z over layers "
                        f"{', '.join(map(str, crossval.layers))})",
                  caption=(f"mean AUROC {ci(crossval.mean_auroc)}, random {ci(crossval.random_mean_auroc)}, "
                           f"top-1 {ci(crossval.top1)}, top-3 {ci(crossval.top3)} ({crossval.n_pairs} pairs); "
                           f"[95% CI, {crossval.n_boot} node bootstraps]"))
    for name in ("concept", "pos/neg", "AUROC [95% CI]", "random [95% CI]"):
        table.add_column(name, justify="left" if name == "concept" else "right", no_wrap=True)
    for concept in crossval.per_concept:
        table.add_row(_name(concept.concept), f"{concept.n_positive}/{concept.n_negative}", ci(concept.auroc),
                      ci(concept.random_auroc))
    return table


def check_lines(evaluation: Evaluation) -> list[str]:
    """One line each for the valence check and the lexical control, when measured."""
    lines = []
    if (valence := evaluation.valence) is not None:
        lines.append(f"valence check: Spearman rho {ci(valence.rho)} vs human ratings of {valence.n_sentences} "
                     f"sentences ({valence.corpus}); VADER lexicon rho {fmt(valence.vader_rho)}; PC1 vs lexicon "
                     f"valence |r| {fmt(valence.pc1_r)} over {len(valence.concept_valence)}/{valence.n_concepts} "
                     f"covered concepts (published {valence.published_pc1_r:g} over 171)")
    if (lexical := evaluation.lexical) is not None:
        source = "out-of-fold" if evaluation.crossval is not None else "held-out"
        lines.append(f"lexical control: false-positive rate {fmt(lexical.false_positive_rate)} of "
                     f"{lexical.n_texts} texts naming an emotion without expressing it, at the threshold of "
                     f"{lexical.true_positive_rate:.0%} true positives ({source}); real negatives above it "
                     f"{fmt(lexical.negative_rate)}")
    return lines


def curve_table(curve: LayerCurve) -> Table:
    """The layer-selection curve: validation AUROC per layer, chosen layers marked."""
    table = Table(title=f"layer selection ({curve.folds}-fold by node on the train split, {curve.method})")
    for name in ("layer", "mean AUROC", "min AUROC", "chosen"):
        table.add_column(name, justify="right")
    for layer, mean, low in zip(curve.layers, curve.mean_auroc, curve.min_auroc):
        table.add_row(str(layer), fmt(mean), fmt(low), "*" if layer in curve.chosen else "")
    return table


def battery_table(evaluation: Evaluation) -> Table:
    """One row per check of the validation battery: its headline figures, and the concepts it skipped."""
    table = Table(title="validation battery")
    for name in ("check", "result", "skipped"):
        table.add_column(name, justify="left", no_wrap=name == "check")
    for result in evaluation.battery:
        skipped = ", ".join(result.skipped[:6]) + (f" +{len(result.skipped) - 6}" if result.skipped[6:] else "")
        table.add_row(result.name, result.line(), skipped or "-")
    return table
