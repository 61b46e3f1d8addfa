"""The lexical training option (``training.lexical``): the hard-negative templates name their concept and stay
disjoint from the lexical control set, the option adds them to the negatives, the word projection removes the
name's direction, and on the real model it lowers the control texts' false-positive rate."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from amygdala.artifact import ReadoutArtifact
from amygdala.artifact.record import LEXICAL_RULE_NAMES
from amygdala.evaluation.lexical_control import control_texts, lexical_control
from amygdala.extraction.emotions import count_mentions, reference_emotions
from amygdala.extraction.examples import Example
from amygdala.extraction.scoring import ExtractOptions
from amygdala.extraction.sources.graph_file import bundled_sample_path, read_graph_file
from amygdala.extraction.stage import select_examples
from amygdala.forward.models import LoadedModel
from amygdala.forward.pooled import pool_texts
from amygdala.forward.pooling import PoolingSpec
from amygdala.training.lexical import (
    LEXICAL_RULES,
    MAX_HARD_NEGATIVES,
    SLOT,
    concept_word,
    hard_negative_data,
    hard_negative_texts,
    mix_negatives,
    mixed_method,
    negative_templates,
    project_word_directions,
)
from amygdala.training.splits import LabelledTexts, labelled_texts
from amygdala.training.stage import TrainOptions, train
from amygdala.training.statistics import ConceptStats

SAMPLE = ("amused", "anxious", "calm", "clarity", "curiosity", "excited", "frustrated", "grateful", "guilty",
          "hopeful", "lonely", "nostalgic", "overwhelmed", "proud", "relieved", "sad", "tired", "warmth")


def _grams(text: str, n: int = 4) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z{}]+", text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def test_every_template_has_one_slot_and_names_each_concept_it_is_filled_with() -> None:
    """The mention rule: a hard negative of E names E (``emotions.count_mentions``), for every reference concept."""
    assert len(negative_templates()) >= 12
    assert all(template.count(SLOT) == 1 for template in negative_templates())
    concepts = {concept.name for concept in reference_emotions()} | set(SAMPLE)
    unnamed = [(concept, text) for concept in sorted(concepts) for text in hard_negative_texts(concept)
               if count_mentions(text, concept) < 1]
    assert unnamed == []


def test_hard_negatives_are_disjoint_from_the_lexical_control_set() -> None:
    """No filled template equals a control text, and no template shares a 4-word run with any control text once
    the concept's name is read as the slot: the control set stays a held-out measurement."""
    control = control_texts(SAMPLE)
    assert len(control) == 90
    filled = {text for concept in SAMPLE for text in hard_negative_texts(concept)}
    assert filled.isdisjoint(item.text for item in control)
    control_grams = set().union(*(_grams(re.sub(re.escape(concept_word(item.concept)), SLOT, item.text,
                                                flags=re.IGNORECASE)) for item in control))
    shared = {template: _grams(template) & control_grams for template in negative_templates()}
    assert {template: grams for template, grams in shared.items() if grams} == {}


def test_hard_negative_data_are_negatives_of_their_own_concept_only() -> None:
    data = hard_negative_data(("calm", "sad"))
    assert data.negative.sum(dim=0).tolist() == [len(negative_templates())] * 2
    assert not data.positive.any() and bool((data.negative.sum(dim=1) == 1).all())
    assert set(data.keys) == {"lexical-negative:calm", "lexical-negative:sad"}


def test_mix_negatives_moves_only_the_negative_means_and_lda_reads_the_mixture() -> None:
    """By hand: the mixed negative mean is 0.9 x the negatives' + 0.1 x the hard mean; the covariance (totals,
    second moments) and the counts stay, so the direction is lda_diagonal's solve against the mixed difference."""
    generator = torch.Generator().manual_seed(0)
    pooled = torch.randn(12, 1, 6, generator=generator, dtype=torch.float64)
    positive = torch.zeros(12, 2, dtype=torch.bool)
    positive[:4, 0], positive[4:8, 1] = True, True
    stats = ConceptStats.from_pooled(pooled, positive, ~positive, ("a", "b"), [3])
    hard = torch.randn(6, generator=generator, dtype=torch.float64)
    mixed = mix_negatives(stats, {3: hard}, 0.1)
    assert torch.allclose(mixed.negative_mean(3), 0.9 * stats.negative_mean(3) + 0.1 * hard)
    assert torch.equal(mixed.covariance(3), stats.covariance(3)) and torch.equal(mixed.positive_sum, stats.positive_sum)
    assert torch.equal(mixed.negative_count, stats.negative_count)
    covariance = stats.covariance(3)
    shrunk = 0.1 * covariance + 0.9 * torch.diag(torch.diagonal(covariance)) \
        + 1e-6 * torch.trace(covariance) / 6 * torch.eye(6, dtype=torch.float64)
    expected = torch.linalg.solve(shrunk, (stats.positive_mean(3) - mixed.negative_mean(3)).T).T
    expected = expected / expected.norm(dim=1, keepdim=True)
    assert torch.allclose(mixed_method("lda_diagonal", {3: hard}, 0.1)(stats, 3), expected)


def test_lexical_rules_match_the_names_the_artifact_accepts() -> None:
    assert tuple(LEXICAL_RULES) == LEXICAL_RULE_NAMES


def test_word_projection_leaves_unit_vectors_orthogonal_to_their_word_direction() -> None:
    generator = torch.Generator().manual_seed(0)
    vectors = {5: torch.nn.functional.normalize(torch.randn(3, 16, generator=generator), dim=1)}
    vectors[5][2] = float("nan")
    words = torch.randn(3, 1, 16, generator=generator, dtype=torch.float64)
    projected = project_word_directions(vectors, words, [5])[5]
    assert torch.allclose((projected[:2].double() * words[:2, 0]).sum(dim=1), torch.zeros(2, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(projected[:2].norm(dim=1), torch.ones(2))
    assert bool(projected[2].isnan().all())
    # only the word's component goes: what is orthogonal to it is kept
    assert float((projected[0].double() * vectors[5][0].double()).sum()) > 0


def _sample_examples(concepts: tuple[str, ...], per_polarity: int = 12) -> list[Example]:
    """The first ``per_polarity`` train positives and negatives of each concept in the bundled sample."""
    selection = select_examples(read_graph_file(bundled_sample_path()), ExtractOptions())
    return [example for concept in concepts for polarity in ("positive", "negative")
            for example in [e for e in selection.examples[concept] if e.split == "train"
                            and e.polarity == polarity][:per_polarity]]


def _control_fpr(loaded: LoadedModel, artifact: ReadoutArtifact, positives: LabelledTexts, spec: PoolingSpec) -> float:
    """In-sample lexical control: per concept, threshold at 90% of its train positives' projections."""
    control = control_texts(artifact.concepts)
    layers = list(artifact.layers)
    vectors = torch.stack([artifact.vectors[layer] for layer in layers], dim=1)  # [C, L, H]
    def scores(texts: Sequence[str]) -> torch.Tensor:
        return torch.einsum("nlh,clh->nc", pool_texts(loaded, texts, layers, spec).float(), vectors)

    result = lexical_control(scores(positives.texts), positives, scores([item.text for item in control]), control)
    return result.false_positive_rate


@pytest.mark.slow
def test_lexical_negatives_lower_the_false_positive_rate_on_the_real_model(gemma: LoadedModel) -> None:
    """Planted: every positive of amused, clarity and curiosity also names its concept ("Feeling amused: ...")
    and no negative does (the extract mention rule), so plain diff-of-means vectors learn the name and fire on
    control texts that only name it; with the hard negatives mixed in, fewer control texts pass the 90%-TPR
    threshold of the concepts' positives."""
    concepts = ("amused", "clarity", "curiosity")
    examples = [replace(e, text=f"Feeling {e.emotion}: {e.text}") if e.polarity == "positive" else e
                for e in _sample_examples(concepts)]
    spec = PoolingSpec()
    plain = train(gemma, examples, TrainOptions(target_layers=(9,), method="diff_of_means", lexical="none"))
    hard = train(gemma, examples, TrainOptions(target_layers=(9,), method="diff_of_means", lexical="negatives"))
    assert hard.record is not None and hard.record.lexical == "negatives"
    data = labelled_texts(examples, concepts, "train")
    before, after = (_control_fpr(gemma, artifact, data, spec) for artifact in (plain, hard))
    assert before >= 0.4 and after <= before - 0.3


def test_eval_folds_refit_with_the_rule_the_artifact_was_trained_with(tiny_model: LoadedModel,
                                                                      tmp_path: Path) -> None:
    """The folds refit from the pooled texts, never from the artifact's vectors: were the record's rule ignored,
    artifacts trained with ``none`` and ``negatives`` would get identical out-of-fold z-scores."""
    from amygdala.evaluation.stage import EvalOptions, evaluate

    from eval_helpers import examples

    rows = examples()
    options = EvalOptions(folds=3, n_boot=20, cache_dir=tmp_path)
    results = {rule: evaluate(tiny_model, train(tiny_model, rows, TrainOptions(target_layers=(2,), lexical=rule,
                                                                                cache_dir=tmp_path)), rows, options)
               for rule in ("none", "negatives")}
    plain, mixed = (results[rule].crossval for rule in ("none", "negatives"))
    assert plain is not None and mixed is not None and plain.fold == mixed.fold
    assert not torch.allclose(plain.z.nan_to_num(), mixed.z.nan_to_num())


def test_hard_negatives_of_many_concepts_are_capped_and_spread_over_the_templates() -> None:
    names = tuple(concept.name for concept in reference_emotions())
    data = hard_negative_data(names)
    assert len(data.texts) <= MAX_HARD_NEGATIVES and bool((data.negative.sum(dim=0) >= 1).all())
    used = {template for template in negative_templates() for text in data.texts
            if text.startswith(template.split(SLOT)[0])}
    assert used == set(negative_templates())
    assert all(count_mentions(text, names[int(row.nonzero())]) >= 1 for text, row in zip(data.texts, data.negative))
