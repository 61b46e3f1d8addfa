"""Shared by the evaluation, layer-selection, report and CLI eval tests: a small examples dir of short texts.

Three emotions with clear-cut one-sentence positives; each emotion's negatives are the other emotions' positives
and a few neutral sentences. Nodes ``*-h*`` are held out. Keys are per text, so one text is one node.
"""

from __future__ import annotations

from pathlib import Path

from amygdala.extraction.examples import Example

POSITIVES: dict[str, list[str]] = {
    "joy": ["I am so happy and delighted today!", "What a wonderful, joyful surprise.",
            "We laughed and danced all night.", "This is the best day of my life!",
            "She beamed with pure happiness.", "Hooray, we won the prize!"],
    "anger": ["I am furious, this makes me so angry!", "He shouted in rage and slammed the door.",
              "How dare they lie to me again!", "I am livid about this insult.",
              "She clenched her fists in fury.", "Stop it, I am sick of your nonsense!"],
    "fear": ["I am terrified of the dark noises.", "Panic gripped me as the footsteps came closer.",
             "My hands shook with dread.", "Something is following us, run!",
             "He froze, too scared to breathe.", "The scream in the night chilled me to the bone."],
}
NEUTRAL = ["The meeting is at ten tomorrow.", "Water boils at one hundred degrees.",
           "The invoice lists three items.", "The train leaves from platform two."]
HELDOUT_PER_EMOTION = 2


def examples() -> list[Example]:
    """The last two positives of each emotion and the last neutral sentence are held out."""
    nodes: list[tuple[str, str, str | None]] = []
    for emotion, texts in POSITIVES.items():
        for index, text in enumerate(texts):
            held = index >= len(texts) - HELDOUT_PER_EMOTION
            nodes.append((f"{emotion}-{'h' if held else 't'}{index}", text, emotion))
    nodes += [(f"neutral-{'h' if i == len(NEUTRAL) - 1 else 't'}{i}", text, None) for i, text in enumerate(NEUTRAL)]
    rows = []
    for emotion in POSITIVES:
        for key, text, label in nodes:
            split = "heldout" if "-h" in key else "train"
            polarity = "positive" if label == emotion else "negative"
            rows.append(Example(emotion, polarity, text, key, 9.0 if polarity == "positive" else 0.0, split))
    return rows


def write_examples_dir(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for emotion in POSITIVES:
        rows = [row for row in examples() if row.emotion == emotion]
        (folder / f"{emotion}.jsonl").write_text("".join(row.to_json() + "\n" for row in rows), encoding="utf-8")
    return folder
