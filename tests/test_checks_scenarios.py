"""Implicit scenarios: the bundled file obeys the extract mention rule, and on Gemma the confusion matrix
counts add up to the scenarios scored."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from amygdala.evaluation.checks import CheckError, CheckOptions
from amygdala.evaluation.checks.scenarios import implicit_scenarios, scenarios
from amygdala.extraction.emotions import count_mentions
from amygdala.forward.models import LoadedModel
from checks_helpers import SPEC, calibrated_on, planted, pooled
from test_checks_sweeps import SAMPLE


def test_scenarios_bundled_name_no_sample_concept_and_cover_each_eight_times() -> None:
    found = implicit_scenarios(CheckOptions())
    assert all(count_mentions(s.text, concept) == 0 for s in found for concept in SAMPLE)
    counts = Counter(s.concept for s in found)
    assert set(counts) == set(SAMPLE) and min(counts.values()) >= 8
    assert len({s.text for s in found}) == len(found)


def test_scenarios_confusion_counts_add_up_to_the_scenarios_scored(gemma: LoadedModel) -> None:
    """Vectors: each concept's mean pooled activation over its own scenarios minus the mean over all of them,
    calibrated on the same texts (z-scores, as a trained artifact's readouts are)."""
    concepts = ("sad", "calm", "amused")
    texts = {c: [s.text for s in implicit_scenarios(CheckOptions()) if s.concept == c] for c in concepts}
    rows = {c: pooled(gemma, texts[c]) for c in concepts}
    centre = torch.cat(list(rows.values())).mean(dim=0)
    artifact = calibrated_on(planted(concepts, [rows[c].mean(dim=0) - centre for c in concepts], gemma.hidden_size),
                             torch.cat(list(rows.values())))
    result = scenarios(gemma, artifact, CheckOptions(("scenarios",), spec=SPEC, n_boot=50))
    n = sum(len(t) for t in texts.values())
    assert len(result.scenarios) == len(result.ranks) == n == 24
    assert sum(map(sum, result.confusion)) == n
    assert [sum(row) for row in result.confusion] == [len(texts[c]) for c in concepts]
    diagonal = sum(result.confusion[i][i] for i in range(len(concepts)))
    assert result.top1.estimate == pytest.approx(diagonal / n) and result.top1.estimate > 1 / 3
    assert result.top3.estimate == 1.0  # three concepts: every rank is <= 3
    assert result.skipped == ()


def test_scenarios_user_file_naming_its_concept_is_refused_in_one_line(tmp_path: Path) -> None:
    file = tmp_path / "mine.jsonl"
    file.write_text(json.dumps({"concept": "sad", "text": "I was so sad when the shop closed."}) + "\n")
    with pytest.raises(CheckError) as error:
        implicit_scenarios(CheckOptions(scenarios=file))
    assert "\n" not in str(error.value) and f"{file} line 1" in str(error.value) and "'sad'" in str(error.value)
