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
from amygdala.forward.activation_cache import ActivationCache
from amygdala.forward.models import LoadedModel
from amygdala.forward.pooled import pool_texts
from amygdala.forward.pooling import PoolingSpec
from amygdala.training.lexical import (
    LEXICAL_RULES,
    SLOT,
    concept_word,
    hard_negative_data,
    hard_negative_texts,
    hard_negatives,
    naming_texts,
    negative_templates,
    project_word_directions,
    word_directions,
)
from amygdala.training.splits import LabelledTexts, labelled_texts
from amygdala.training.stage import TrainError, TrainOptions, train

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


def test_hard_negatives_are_negatives_of_their_own_concept_only() -> None:
    examples = hard_negatives(["calm", "sad"])
    assert len(examples) == 2 * len(negative_templates())
    assert {(e.emotion, e.polarity, e.split, e.key) for e in examples} == {
        ("calm", "negative", "train", "lexical-negative:calm"), ("sad", "negative", "train", "lexical-negative:sad")}
    data = hard_negative_data(("calm", "sad"))
    assert data.negative.sum(dim=0).tolist() == [len(negative_templates())] * 2
    assert not data.positive.any() and bool((data.negative.sum(dim=1) == 1).all())


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


def _control_fpr(loaded: LoadedModel, artifact: ReadoutArtifact, positives: LabelledTexts, cache: ActivationCache,
                 spec: PoolingSpec) -> float:
    """In-sample lexical control: per concept, threshold at 90% of its train positives' projections."""
    control = control_texts(artifact.concepts)
    layers = list(artifact.layers)
    vectors = torch.stack([artifact.vectors[layer] for layer in layers], dim=1)  # [C, L, H]
    def scores(texts: Sequence[str]) -> torch.Tensor:
        return torch.einsum("nlh,clh->nc", pool_texts(loaded, texts, layers, spec, cache=cache).float(), vectors)

    result = lexical_control(scores(positives.texts), positives, scores([item.text for item in control]), control)
    return result.false_positive_rate


@pytest.mark.slow
def test_lexical_negatives_add_negatives_and_lower_the_false_positive_rate_on_the_real_model(
        gemma: LoadedModel, tmp_path: Path) -> None:
    """Planted: every positive of amused, clarity and curiosity also names its concept ("Feeling amused: ...")
    and no negative does (the extract mention rule), so plain vectors learn the name and fire on control texts
    that only name it; trained with the hard negatives, fewer control texts pass the 90%-TPR threshold."""
    concepts = ("amused", "clarity", "curiosity")
    examples = [replace(e, text=f"Feeling {e.emotion}: {e.text}") if e.polarity == "positive" else e
                for e in _sample_examples(concepts)]
    cache, spec = ActivationCache(tmp_path), PoolingSpec()
    plain = train(gemma, examples, TrainOptions(target_layers=(9,), cache_dir=tmp_path))
    hard = train(gemma, examples, TrainOptions(target_layers=(9,), cache_dir=tmp_path, lexical="negatives"))
    assert hard.record is not None and plain.record is not None and hard.record.lexical == "negatives"
    added = len(negative_templates())
    assert {c: (p, n + added) for c, (p, n) in plain.record.counts.items()} == dict(hard.record.counts)
    data = labelled_texts(examples, concepts, "train")
    before, after = (_control_fpr(gemma, artifact, data, cache, spec) for artifact in (plain, hard))
    assert before >= 0.5 and after < before


def test_train_with_both_adds_the_hard_negatives_and_leaves_vectors_orthogonal_to_the_word(
        tiny_model: LoadedModel) -> None:
    """End to end on the tiny model: the record counts 16 more negatives per concept and says ``both``, and each
    vector is orthogonal to its concept's word direction from the pooled naming phrases."""
    texts = ["She laughed and hugged me.", "The report is due Monday.", "I could not stop shaking.",
             "We planted tomatoes.", "Why does he never listen?", "The sunset was golden."]
    examples = [Example(concept, polarity, texts[i], f"k{i}", 5.0, "train")
                for concept, positives in (("joy", (0, 5)), ("fear", (2, 4)))
                for i in range(len(texts)) for polarity in (("positive",) if i in positives else ("negative",))]
    plain = train(tiny_model, examples, TrainOptions(target_layers=(1, 3)))
    both = train(tiny_model, examples, TrainOptions(target_layers=(1, 3), lexical="both"))
    assert plain.record is not None and both.record is not None and both.record.lexical == "both"
    added = len(negative_templates())
    assert dict(both.record.counts) == {c: (p, n + added) for c, (p, n) in plain.record.counts.items()}
    naming = pool_texts(tiny_model, naming_texts(both.concepts), [1, 3], PoolingSpec())
    words = word_directions(naming, len(both.concepts))
    for position, layer in enumerate((1, 3)):
        along = (both.vectors[layer].double() * words[:, position]).sum(dim=1)
        assert torch.allclose(along, torch.zeros(2, dtype=torch.float64), atol=1e-4)


def test_train_refuses_an_unknown_lexical_rule_before_any_forward(tiny_model: LoadedModel) -> None:
    examples = [Example("joy", "positive", "a b", "k0", 5.0, "train"), Example("joy", "negative", "c d", "k1", 0.0,
                                                                             "train")]
    with pytest.raises(TrainError, match="lexical 'words' is not one of none, negatives, project, both"):
        train(tiny_model, examples, TrainOptions(lexical="words"))  # type: ignore[arg-type]
