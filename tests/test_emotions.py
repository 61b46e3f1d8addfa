"""The emotion vocabulary: the 171-concept reference list, name normalisation and word forms."""

from __future__ import annotations

from pathlib import Path

import pytest

from amygdala.extraction.emotions import (
    count_mentions,
    normalize_name,
    reference_clusters,
    reference_emotions,
    word_forms,
)

REFERENCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference" / "emotions171.tsv"
SAMPLE_TAGS = ["warmth", "clarity", "curiosity", "frustrated", "anxious", "grateful", "proud", "lonely", "calm", "tired", "excited", "amused", "guilty", "nostalgic", "relieved", "hopeful", "sad", "overwhelmed"]


def test_reference_emotions_lists_171_unique_concepts_in_ten_clusters() -> None:
    concepts = reference_emotions()
    assert len(concepts) == 171
    assert len({concept.name for concept in concepts}) == 171
    assert len({concept.cluster for concept in concepts}) == 10
    assert reference_clusters()["at_ease"] == "Peaceful Contentment"
    assert reference_clusters()["grief_stricken"] == "Despair and Shame"


@pytest.mark.skipif(not REFERENCE.is_file(), reason="the shared reference list is outside this checkout")
def test_reference_emotions_match_the_shared_reference_file() -> None:
    rows = [line.split("\t") for line in REFERENCE.read_text(encoding="utf-8").splitlines()[1:] if line.strip()]
    assert [(c.label, c.cluster) for c in reference_emotions()] == [(name, cluster) for name, cluster in rows]


@pytest.mark.parametrize(("raw", "name"), [("at ease", "at_ease"), ("Grief-Stricken", "grief_stricken"),
                                           ("  Worn   Out ", "worn_out"), ("calm", "calm"), ("SELF-conscious",
                                                                                        "self_conscious")])
def test_normalize_name_lowercases_and_joins_with_underscores(raw: str, name: str) -> None:
    assert normalize_name(raw) == name


@pytest.mark.parametrize(("emotion", "expected"), [
    ("frustrated", {"frustrated", "frustrating", "frustration", "frustrate"}),
    ("anxious", {"anxious", "anxiety", "anxiously"}),
    ("proud", {"proud", "pride"}),
    ("relieved", {"relief", "relieve", "relieved"}),
    ("hopeful", {"hope", "hopeful", "hoping", "hopes"}),
    ("curiosity", {"curious", "curiosity"}),
    ("lonely", {"lonely", "loneliness"}),
    ("grateful", {"grateful", "gratitude"}),
    ("excited", {"excited", "exciting", "excitement"}),
    ("nostalgic", {"nostalgic", "nostalgia"}),
    ("overwhelmed", {"overwhelmed", "overwhelming", "overwhelm"}),
    ("guilty", {"guilty", "guilt"}),
])
def test_word_forms_cover_the_common_forms(emotion: str, expected: set[str]) -> None:
    assert expected <= set(word_forms(emotion))


@pytest.mark.parametrize(("emotion", "expected"), [
    ("alarmed", {"alarm", "alarmed", "alarming"}),
    ("rattled", {"rattle", "rattled", "rattling"}),
    ("worried", {"worry", "worried", "worrying", "worries"}),
    ("trapped", {"trap", "trapped", "trapping"}),
    ("exasperated", {"exasperate", "exasperating", "exasperation"}),
    ("nervous", {"nervous", "nervously", "nervousness"}),
    ("resentful", {"resentful", "resent"}),
    ("indifferent", {"indifferent", "indifference"}),
])
def test_word_forms_fall_back_to_morphology(emotion: str, expected: set[str]) -> None:
    assert expected <= set(word_forms(emotion))


@pytest.mark.parametrize("concept", reference_emotions(), ids=lambda concept: concept.name)
def test_every_reference_concept_names_itself(concept: object) -> None:
    assert count_mentions(f"I felt {concept.label} today.", concept.name) == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("tag", SAMPLE_TAGS)
def test_every_sample_tag_is_named_by_its_own_word(tag: str) -> None:
    assert count_mentions(f"A note about {tag.upper()}.", tag) == 1


def test_count_mentions_counts_whole_words_case_insensitively() -> None:
    text = "Frustration again; a frustrating bug. Unfrustrated readers and frustrations-free code."
    assert count_mentions(text, "frustrated") == 3
    assert count_mentions("The chalk outline was sadder than the saddle.", "sad") == 1


def test_count_mentions_matches_phrases_across_separators() -> None:
    assert count_mentions("at ease, At-Ease and at_ease but not atease", "at ease") == 3
