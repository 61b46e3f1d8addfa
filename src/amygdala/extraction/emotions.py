"""The emotion vocabulary: the 171-concept reference list, name normalisation and the word forms of an emotion.

``word_forms(emotion)`` lists the common words that *name* an emotion (``frustrated`` -> frustrated, frustrating,
frustration, ...). Selection uses them to keep texts that talk about an emotion out of its negatives, so a
direction learns the emotion, not the word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

_REFERENCE_FILE = "emotions171.tsv"
_VOWELS = "aeiou"
_SEPARATORS = re.compile(r"[\s_-]+")


@dataclass(frozen=True)
class EmotionConcept:
    """One concept of the reference list: its normalised name, its label as listed, and its cluster."""

    name: str
    label: str
    cluster: str


def normalize_name(name: str) -> str:
    """Canonical emotion name: lower case, runs of spaces and ``-`` become ``_`` (``At ease`` -> ``at_ease``)."""
    return re.sub(r"[\s-]+", "_", name.strip().lower())


def reference_emotions() -> tuple[EmotionConcept, ...]:
    """The 171 concepts of ``data/emotions171.tsv`` (columns ``name``, ``cluster``), in file order."""
    text = resources.files("amygdala").joinpath("data", _REFERENCE_FILE).read_text(encoding="utf-8")
    rows = [line.split("\t") for line in text.splitlines()[1:] if line.strip()]
    return tuple(EmotionConcept(normalize_name(label), label.strip(), cluster.strip()) for label, cluster in rows)


def reference_clusters() -> dict[str, str]:
    """Normalised concept name -> cluster, for every concept of the reference list."""
    return {concept.name: concept.cluster for concept in reference_emotions()}


# Hand-written forms for the sample's tags and the irregular members of the reference list.
_FORMS: dict[str, str] = {
    "warmth": "warmth warm warmly warmer warmest warming warmed warmhearted warm-hearted",
    "clarity": "clarity clear clearly clearer clearest clarify clarifies clarified clarifying",
    "curiosity": "curiosity curiosities curious curiously",
    "frustrated": "frustrated frustrate frustrates frustrating frustratingly frustration frustrations",
    "anxious": "anxious anxiously anxiousness anxiety anxieties",
    "grateful": "grateful gratefully gratefulness gratitude",
    "proud": "proud proudly prouder proudest pride prides",
    "lonely": "lonely lonelier loneliest loneliness lonesome",
    "calm": "calm calms calmed calming calmly calmer calmest calmness",
    "tired": "tired tire tires tiring tiredness tiredly",
    "excited": "excited excite excites exciting excitedly excitement excitable",
    "amused": "amused amuse amuses amusing amusingly amusement",
    "guilty": "guilty guiltily guilt guiltier",
    "nostalgic": "nostalgic nostalgically nostalgia",
    "relieved": "relieved relieve relieves relieving relief",
    "hopeful": "hopeful hopefully hopefulness hope hopes hoped hoping",
    "hope": "hope hopes hoped hoping hopeful hopefully hopefulness",
    "sad": "sad sadly sadness sadder saddest sadden saddens saddened",
    "overwhelmed": "overwhelmed overwhelm overwhelms overwhelming overwhelmingly",
    "afraid": "afraid",
    "angry": "angry angrily angrier angriest anger angered",
    "ashamed": "ashamed shame shamed shameful",
    "bored": "bored bore bores boring boredom",
    "content": "content contented contentedly contentment",
    "depressed": "depressed depressing depression",
    "embarrassed": "embarrassed embarrass embarrassing embarrassment",
    "envious": "envious enviously envy envies",
    "euphoric": "euphoric euphoria",
    "grief_stricken": "grief-stricken grief",
    "happy": "happy happily happier happiest happiness",
    "jealous": "jealous jealously jealousy",
    "joyful": "joyful joyfully joy joyous",
    "loving": "loving lovingly love loves loved",
    "miserable": "miserable miserably misery",
    "optimistic": "optimistic optimistically optimism",
    "panicked": "panicked panic panics panicking panicky",
    "paranoid": "paranoid paranoia",
    "patient": "patient patiently patience",
    "peaceful": "peaceful peacefully peace",
    "serene": "serene serenely serenity",
    "skeptical": "skeptical sceptical skepticism scepticism",
    "sympathetic": "sympathetic sympathy sympathize",
    "terrified": "terrified terrify terrifying terror",
    "thankful": "thankful thankfully thank thanks thanked",
    "triumphant": "triumphant triumphantly triumph",
    "vulnerable": "vulnerable vulnerability",
    "worried": "worried worry worries worrying",
    "hateful": "hateful hate hates hated hatred",
    "furious": "furious furiously fury",
    "enthusiastic": "enthusiastic enthusiastically enthusiasm",
    "compassionate": "compassionate compassion",
    "empathetic": "empathetic empathy",
    "stressed": "stressed stress stresses stressful",
    "horrified": "horrified horrify horrifying horror",
    "ecstatic": "ecstatic ecstasy",
    "blissful": "blissful bliss",
    "cheerful": "cheerful cheerfully cheer cheery",
    "fulfilled": "fulfilled fulfilling fulfillment fulfilment",
    "satisfied": "satisfied satisfy satisfying satisfaction",
    "sleepy": "sleepy sleepily sleepiness",
    "self_confident": "self-confident self-confidently self-confidence",
    "self_conscious": "self-conscious self-consciously self-consciousness",
    "self_critical": "self-critical self-criticism",
}


def hand_listed_emotions() -> frozenset[str]:
    """The emotions whose word forms are written out by hand (the sample's tags among them)."""
    return frozenset(_FORMS)


def _verb_base(word: str) -> str:
    """Best guess at the verb behind an ``-ed`` adjective: ``frustrated`` -> frustrate, ``alarmed`` -> alarm."""
    if word.endswith("ied"):
        return word[:-3] + "y"
    stem = word[:-2]
    if len(stem) >= 2 and stem[-1] == stem[-2] and stem[-1] not in "slfz":
        return stem[:-1]  # trapped -> trap
    if stem[-1] == "l" and stem[-2] not in _VOWELS:
        return stem + "e"  # rattled -> rattle
    if stem[-1] in "tvcszgr" and stem[-2] in _VOWELS and not stem.endswith("er"):
        return stem + "e"  # frustrated -> frustrate, tired -> tire
    return stem


def _ed_forms(word: str) -> set[str]:
    """Forms of an ``-ed`` adjective: the verb, its third person and -ing form, and -ation for -ate verbs."""
    base = _verb_base(word)
    ing = base + "ing" if word.endswith("ied") else word[:-2] + "ing"  # trapped -> trapping, tired -> tiring
    plural = base[:-1] + "ies" if word.endswith("ied") else base + ("es" if base.endswith(("s", "sh", "x")) else "s")
    forms = {word, base, ing, plural}
    if base.endswith("ate"):
        forms.add(base[:-1] + "ion")  # frustrate -> frustration
    return forms


def _generic_forms(word: str) -> set[str]:
    """Morphological fallback for one word: -ed words get their verb forms, others their -ly/-ness forms."""
    if word.endswith("ed") and len(word) > 4:
        return _ed_forms(word)
    stem = word[:-1] + "i" if word.endswith("y") and len(word) > 2 and word[-2] not in _VOWELS else word
    forms = {word, stem + "ly", stem + "ness"}
    if word.endswith("ful"):
        forms |= {word[:-3], word[:-3] + "s"}  # hopeful -> hope, hopes
    elif word.endswith(("ent", "ant")):
        forms.add(word[:-1] + "ce")  # patient -> patience
    return forms


def word_forms(emotion: str) -> tuple[str, ...]:
    """The common words naming ``emotion`` (case-insensitive, sorted), hand-written where known, else derived."""
    name = normalize_name(emotion)
    if name in _FORMS:
        return tuple(sorted(set(_FORMS[name].split()) | {name.replace("_", " ")}))
    if "_" in name:
        return (name.replace("_", " "),)  # a phrase (at ease, worn out) is named only as itself
    return tuple(sorted(_generic_forms(name)))


def mention_pattern(emotion: str) -> re.Pattern[str]:
    """A case-insensitive whole-word regex matching any word form of ``emotion`` (``at ease`` ~ ``at-ease``)."""
    alternatives = sorted(word_forms(emotion), key=len, reverse=True)
    parts = [r"[\s_-]+".join(re.escape(piece) for piece in _SEPARATORS.split(form)) for form in alternatives]
    return re.compile(r"(?<!\w)(?:" + "|".join(parts) + r")(?!\w)", re.IGNORECASE)


def count_mentions(text: str, emotion: str | re.Pattern[str]) -> int:
    """How many times ``text`` names the emotion (any of its word forms, whole words, case-insensitive)."""
    pattern = emotion if isinstance(emotion, re.Pattern) else mention_pattern(emotion)
    return len(pattern.findall(text))


__all__ = [
    "EmotionConcept",
    "count_mentions",
    "hand_listed_emotions",
    "mention_pattern",
    "normalize_name",
    "reference_clusters",
    "reference_emotions",
    "word_forms",
]
