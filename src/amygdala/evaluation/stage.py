"""Held-out evaluation of a readout artifact: separation, N-way ranking, cross-talk and stability.

Everything is measured on pooled activations, pooled as the artifact was trained (``EvalOptions.resolved`` takes
the pooling spec and method from the artifact's training record unless the options set them), and projected and
z-scored by ``readout.project_pooled``, the projection the offline readout and the server use:

- **separation**, per concept and layer, on the ``heldout`` split: the AUROC of the raw projection ``x·v`` of
  the concept's positive texts against its negative texts (``sklearn.metrics.roc_auc_score``; 0.5 is chance),
  and Cohen's d (difference of the means over the pooled standard deviation, n-1 degrees of freedom). The
  baseline is the same two figures for a seeded random unit direction per concept and layer.
- **ranking** (N-way): every held-out (text, concept) positive pair scores the text against every concept with
  the calibrated z-score ``(x·v - mean) / std`` (mean and std of each concept's projection over the training
  texts, from the manifest), so concepts with different projection scales are comparable; per layer, and as the
  mean z over the artifact's layers (``layer=None``). The rank is *filtered*: other concepts the text is also a
  positive for do not count against it. Top-1 / top-3 are the shares of rank <= 1 / <= 3; the confusion matrix
  counts (true concept, best-scoring allowed concept).
- **cross-talk**, per layer: the cosine between concept vectors, beside the phi coefficient of the positive labels
  per node (both splits); pairs above ``cosine_flag`` are flagged, and so is a concept whose vector the other
  concepts' vectors explain with ridge R² >= ``explained_flag`` (``sklearn.linear_model.Ridge``, no intercept,
  hidden dimensions as samples; R² = 1 - |v - fit|² / |v|²).
- **stability**, per concept and layer: the cosine between vectors trained with the artifact's method on two
  disjoint halves of the ``train`` split (split by node key, seeded).

Optional, from the same single pooling pass (one forward per unique text for everything):

- ``folds``: K-fold cross-validation by node over both splits with the artifact's method and neutral removal
  (``crossval``): per concept AUROC, top-1/top-3 and the random baseline, each with a bootstrap 95% CI;
- ``valence_check``: the artifact's vectors against human valence ratings of real sentences (``valence``);
- **across sources** (when the examples hold both graph and synthetic train texts): vectors fitted on one source
  scored on the other, and on both (``sources.cross_source``);
- the **concept space** (always, no forward pass): PC1 and PC2 of the concept vectors against lexicon valence
  (``concept_space``);
- the **lexical control** (always, for the concepts the bundled control set covers): the false-positive rate of
  texts that name a concept without expressing it, at the threshold of 90% true positives (``lexical_control``),
  on the held-out mean z, or on the out-of-fold mean z with ``folds``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from amygdala.artifact import ReadoutArtifact, check_fits_model
from amygdala.evaluation.concept_space import concept_space
from amygdala.evaluation.crossval import CrossValidation, cross_validate, fold_problems
from amygdala.evaluation.lexical_control import LexicalControl, control_texts, lexical_control
from amygdala.evaluation.metrics import (
    cosine_matrix,
    explained_by_others,
    filtered_ranks,
    phi_matrix,
    random_unit_directions,
    separation,
)
from amygdala.evaluation.results import (
    ConceptLayerScore,
    CrossTalk,
    EvalError,
    EvalOptions,
    Evaluation,
    Ranking,
    nanmean,
)
from amygdala.evaluation.sources import cross_source, text_sources
from amygdala.evaluation.valence import RatedSentences, ValenceCheck, rated_sentences, valence_check
from amygdala.extraction.examples import Example
from amygdala.forward.activation_cache import ActivationCache
from amygdala.forward.distributed import check_same_inputs
from amygdala.forward.launcher import SINGLE, World
from amygdala.forward.models import LoadedModel
from amygdala.forward.pooled import pool_texts
from amygdala.readout.attach import read_text, warn_if_other_model
from amygdala.readout.projection import Projector, ReadoutOptions, calibrated, project_pooled, projector_for
from amygdala.training.directions import DEFAULT_METHOD, DIRECTION_METHODS, fit_directions
from amygdala.training.lexical import (
    hard_negative_data,
    lexical_fit,
    naming_texts,
    uses_negatives,
    uses_projection,
    word_directions,
)
from amygdala.training.splits import LabelledTexts, key_folds, labelled_texts
from amygdala.training.statistics import stats_device


def check_inputs(artifact: ReadoutArtifact, examples: Sequence[Example], options: EvalOptions) -> None:
    """Every problem of evaluating ``artifact`` on ``examples`` with ``options``, as one ``EvalError``, before
    any model work."""
    heldout, train = (labelled_texts(examples, artifact.concepts, split) for split in ("heldout", "train"))
    problems = []
    counts = heldout.positive.sum(dim=0) + train.positive.sum(dim=0)
    if missing := [concept for concept, count in zip(artifact.concepts, counts.tolist()) if count == 0]:
        problems.append(f"no examples for concept(s) {', '.join(missing)}: point --training-data-dir at the "
                        "examples the artifact was trained on")
    if not heldout.texts:
        problems.append("no examples in the heldout split: extract with --heldout-fraction > 0")
    if (options.method or DEFAULT_METHOD) not in DIRECTION_METHODS:
        problems.append(f"method {options.method!r} is not one of {', '.join(DIRECTION_METHODS)}")
    if options.valence_sentences is not None and options.valence_sentences < 3:
        problems.append(f"--valence-sentences {options.valence_sentences} must be >= 3 (a rank correlation)")
    if options.folds is not None:
        problems += fold_problems(labelled_texts(examples, artifact.concepts, None).keys, options.folds, "--folds")
    if problems:
        raise EvalError("evaluation inputs: " + "; ".join(problems))


def _ranking(z: torch.Tensor, data: LabelledTexts, layer: int | None) -> Ranking:
    truths, ranks, picks = filtered_ranks(z, data)
    n_concepts = z.shape[1]
    confusion = [[0] * n_concepts for _ in range(n_concepts)]
    for truth, pick in zip(truths, picks):
        confusion[truth][pick] += 1
    share = (lambda k: sum(r <= k for r in ranks) / len(ranks)) if ranks else (lambda k: math.nan)
    return Ranking(layer, share(1), share(3), nanmean([float(r) for r in ranks]), len(ranks),
                   tuple(tuple(row) for row in confusion))


def _crosstalk(vectors: torch.Tensor, layer: int, concepts: Sequence[str], options: EvalOptions) -> CrossTalk:
    cosine = cosine_matrix(vectors)
    explained = explained_by_others(vectors, options.ridge_alpha)
    pairs = tuple((concepts[i], concepts[j], float(cosine[i, j])) for i in range(len(concepts))
                  for j in range(i + 1, len(concepts)) if cosine[i, j] > options.cosine_flag)
    flagged = tuple(c for c, r2 in zip(concepts, explained) if r2 >= options.explained_flag)
    return CrossTalk(layer, tuple(tuple(row) for row in cosine.tolist()), tuple(explained), pairs, flagged)


def _pooled_rows(loaded: LoadedModel, groups: Sequence[Sequence[str]], layers: Sequence[int],
                 options: EvalOptions, world: World) -> list[torch.Tensor]:
    """Pooled activations of each group of texts, from one pass over their union (``pool_texts`` forwards each
    unique text once)."""
    pooled = pool_texts(loaded, [text for group in groups for text in group], layers, options.spec,
                        batch_size=options.batch_size, batch_tokens=options.batch_tokens, progress=options.progress,
                        world=world, cache=ActivationCache(options.cache_dir) if options.cache_dir else None)
    return list(torch.split(pooled, [len(group) for group in groups]))


def _lexical_groups(artifact: ReadoutArtifact, options: EvalOptions) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The hard negatives' and naming phrases' texts the folds refit with, when trained with a lexical rule."""
    rule = artifact.record.lexical if artifact.record is not None else "none"
    if options.folds is None:
        return (), ()
    return (hard_negative_data(artifact.concepts).texts if uses_negatives(rule) else (),
            naming_texts(artifact.concepts) if uses_projection(rule) else ())


@dataclass(frozen=True)
class _Checks:
    crossval: CrossValidation | None
    valence: ValenceCheck | None
    lexical: LexicalControl | None


def _checks(artifact: ReadoutArtifact, everything: LabelledTexts, pooled: list[torch.Tensor],
            heldout: LabelledTexts, held_z: torch.Tensor, projector: Projector, corpus: RatedSentences | None,
            options: EvalOptions, device: torch.device) -> _Checks:
    """Cross-validation, valence check and lexical control on the pooled (all texts, control, corpus, hard
    negatives, naming phrases) rows; the folds refit as the artifact was trained (neutral PCs, lexical rule)."""
    all_pooled, control_pooled, corpus_pooled, negatives_pooled, naming_pooled = pooled
    control = control_texts(artifact.concepts)
    crossval = None
    if options.folds is not None:
        method = options.method or DEFAULT_METHOD
        neutral_pcs = artifact.record.neutral_pcs if artifact.record is not None else 0  # refit as trained
        def fit(part_pooled: torch.Tensor, part: LabelledTexts) -> dict[int, torch.Tensor]:
            return fit_directions(part_pooled, part, artifact.layers, method, device, neutral_pcs=neutral_pcs)

        rule = artifact.record.lexical if artifact.record is not None else "none"
        crossval = cross_validate(all_pooled, everything, everything.keys, artifact.layers, folds=options.folds,
                                  seed=options.seed, n_boot=options.n_boot, extra=control_pooled,
                                  fit=fit if rule == "none" else lexical_fit(
                                      method, rule, negatives_pooled,
                                      word_directions(naming_pooled, len(artifact.concepts)) if len(naming_pooled)
                                      else naming_pooled, artifact.layers, device,
                                      neutral_pcs))
    lexical = None
    if control:
        if crossval is not None and crossval.extra_z is not None:
            lexical = lexical_control(crossval.scores, everything, crossval.extra_z.mean(dim=1), control)
        else:
            control_z = project_pooled(control_pooled, projector, zscore=True).mean(dim=1)
            lexical = lexical_control(held_z.mean(dim=1), heldout, control_z, control)
    valence = None if corpus is None else valence_check(artifact.vectors, artifact.concepts, artifact.layers,
                                                        corpus_pooled, corpus, n_boot=options.n_boot,
                                                        seed=options.seed)
    return _Checks(crossval, valence, lexical)


def evaluate(loaded: LoadedModel, artifact: ReadoutArtifact, examples: Sequence[Example],
             options: EvalOptions = EvalOptions(), texts: Sequence[tuple[str, str]] = (),
             world: World = SINGLE) -> Evaluation:
    """Measure ``artifact`` on the held-out split of ``examples`` (see the module docstring for each figure);
    ``texts`` are ``(label, text)`` pairs read out token by token, for eyeballing generalisation. The train
    texts' activations come from ``options.cache_dir`` when training left them there (one forward per text).
    In a data-parallel ``world`` the ranks pool disjoint shards and every rank measures the whole."""
    check_fits_model(artifact, n_layers=loaded.n_layers, hidden_size=loaded.hidden_size, model_id=loaded.model_id)
    warn_if_other_model(loaded, artifact)
    options = options.resolved(artifact)
    concepts, layers = artifact.concepts, artifact.layers
    check_inputs(artifact, examples, options)
    heldout, train = (labelled_texts(examples, concepts, split) for split in ("heldout", "train"))
    everything = labelled_texts(examples, concepts, None)
    corpus = rated_sentences(options.valence_sentences) if options.valence_check else None
    groups = [heldout.texts, train.texts, everything.texts if options.folds else (),
              [item.text for item in control_texts(concepts)], corpus.texts if corpus else (),
              *_lexical_groups(artifact, options)]
    check_same_inputs(world, "examples, vectors, model or options", {
        "texts": hashlib.sha256("\n".join(text for group in groups for text in group).encode()).hexdigest(),
        "vectors": [artifact.concepts, artifact.layers], "model": loaded.fingerprint,
        "options": [repr(options.spec), options.batch_size, options.batch_tokens]})
    held, fit, *rest = _pooled_rows(loaded, groups, layers, options, world)
    projector = calibrated(projector_for(artifact), fit)  # the manifest's, else the train texts'
    raw, z = project_pooled(held, projector, zscore=False), project_pooled(held, projector, zscore=True)
    random = random_unit_directions(len(layers), len(concepts), loaded.hidden_size, options.seed)
    baseline = project_pooled(held, Projector(concepts, layers, random, None, None), zscore=False)
    halves = key_folds(train.keys, 2, options.seed)
    a, b = (fit_directions(fit[rows], train.subset(rows), layers, options.method or DEFAULT_METHOD,
                           stats_device(loaded.device)) for rows in halves)
    scores = []
    for i, layer in enumerate(layers):
        (aurocs, ds), (rand_aurocs, rand_ds) = separation(raw[:, i], heldout), separation(baseline[:, i], heldout)
        stability = (a[layer] * b[layer]).sum(dim=1).tolist()
        scores += [ConceptLayerScore(concept, layer, aurocs[c], ds[c], rand_aurocs[c], rand_ds[c], stability[c],
                                     int(heldout.positive[:, c].sum()), int(heldout.negative[:, c].sum()))
                   for c, concept in enumerate(concepts)]
    rankings = [_ranking(z[:, i], heldout, layer) for i, layer in enumerate(layers)]
    phi = phi_matrix(everything.positive)
    checks = _checks(artifact, everything, rest, heldout, z, projector, corpus, options, stats_device(loaded.device))
    sources = cross_source((fit, train), (held, heldout), text_sources(examples), layers,
                           options.method or DEFAULT_METHOD, stats_device(loaded.device),
                           neutral_pcs=artifact.record.neutral_pcs if artifact.record is not None else 0)
    readouts = [read_text(loaded, artifact, text, ReadoutOptions(zscore=artifact.calibration is not None),
                          spec=options.spec) for _, text in texts]
    return Evaluation(loaded.model_id, concepts, layers, options, tuple(sorted(scores, key=lambda s: s.concept)),
                      (*rankings, _ranking(z.mean(dim=1), heldout, None)), tuple(tuple(r) for r in phi.tolist()),
                      tuple(_crosstalk(projector.vectors[i], layer, concepts, options)
                            for i, layer in enumerate(layers)),
                      len(heldout.texts), len(train.texts), tuple(readouts), tuple(label for label, _ in texts),
                      artifact.calibration is not None, checks.crossval, checks.valence, checks.lexical, sources,
                      concept_space(artifact.vectors, concepts, layers))
