"""Rebuild ``data/emobank_sentences.tsv`` and ``data/emobank_concept_arousal.tsv`` from EmoBank's ``emobank.csv``.

Usage: ``python scripts/build_emobank_data.py PATH/TO/corpus/emobank.csv`` (EmoBank, github.com/JULIELab/EmoBank,
CC-BY-SA 4.0; see ``src/amygdala/data/EMOBANK_LICENSE.txt``). The slice: a seeded random 600 (seed 0) of the
sentences of 30-250 characters. The concept table: for each of the 171 reference concepts, the mean arousal of
the sentences OUTSIDE the slice that name it (any word form, ``emotions.mention_pattern``), kept when at least
``MIN_SENTENCES`` do.
"""

from __future__ import annotations

import csv
import random
import sys
from pathlib import Path

from amygdala.extraction.emotions import mention_pattern, reference_emotions

DATA = Path(__file__).resolve().parents[1] / "src" / "amygdala" / "data"
SLICE, SEED, MIN_SENTENCES = 600, 0, 3


def main(path: str) -> None:
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    short = [row for row in rows if 30 <= len(row["text"].strip()) <= 250 and "\t" not in row["text"]
             and "\n" not in row["text"]]
    chosen = random.Random(SEED).sample(short, SLICE)
    with open(DATA / "emobank_sentences.tsv", "w", encoding="utf-8") as out:
        out.write("id\tvalence\tarousal\ttext\n")
        for row in chosen:
            out.write(f"{row['id']}\t{float(row['V']):.4g}\t{float(row['A']):.4g}\t{row['text'].strip()}\n")
    taken = {row["id"] for row in chosen}
    rest = [row for row in rows if row["id"] not in taken]
    with open(DATA / "emobank_concept_arousal.tsv", "w", encoding="utf-8") as out:
        out.write("concept\tarousal\tn_sentences\n")
        for concept in reference_emotions():
            pattern = mention_pattern(concept.name)
            hits = [float(row["A"]) for row in rest if pattern.search(row["text"])]
            if len(hits) >= MIN_SENTENCES:
                out.write(f"{concept.name}\t{sum(hits) / len(hits):.4f}\t{len(hits)}\n")


if __name__ == "__main__":
    main(sys.argv[1])
