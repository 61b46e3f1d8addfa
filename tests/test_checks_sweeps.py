"""Intensity sweeps on Gemma: a direction planted from the model's own activations rises with the slot; bad
templates are refused in one line naming the file and line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from amygdala.evaluation.checks import CheckError, CheckOptions
from amygdala.evaluation.checks.sweeps import SweepTemplate, sweep_templates, sweeps
from amygdala.extraction.emotions import reference_emotions
from amygdala.forward.models import LoadedModel
from checks_helpers import SPEC, planted, pooled, regression_direction

SAMPLE = ["amused", "anxious", "calm", "clarity", "curiosity", "excited", "frustrated", "grateful", "guilty", "hopeful", "lonely", "nostalgic", "overwhelmed", "proud", "relieved", "sad", "tired", "warmth"]


def test_sweep_templates_bundled_cover_the_sample_and_the_171_list() -> None:
    templates = sweep_templates(CheckOptions())
    named = {c for t in templates for c in (*t.rises, *t.falls)}
    assert len(templates) >= 16
    assert len(named & set(SAMPLE)) >= 12
    assert named <= set(SAMPLE) | {e.name for e in reference_emotions()}
    assert all(len(set(t.texts())) == len(t.values) for t in templates)


def test_sweep_on_a_planted_direction_rises(gemma: LoadedModel, tmp_path: Path) -> None:
    """The vector is the least-squares direction of Gemma's pooled activations of the swept texts onto the slot
    values, so the readout must rise with the slot (rho 1), and its negation must fall (signed rho 1 too)."""
    template = SweepTemplate("dose", "I just took {x} mg of Tylenol.", (10.0, 100.0, 1000.0, 10000.0), ("dose",),
                             ("antidose",))
    direction = regression_direction(pooled(gemma, template.texts()), [math.log10(v) for v in template.values])
    artifact = planted(("dose", "antidose"), [direction, -direction], gemma.hidden_size)
    file = tmp_path / "templates.jsonl"
    file.write_text(json.dumps({"id": "dose", "template": template.template, "values": list(template.values),
                                "rises": ["dose"], "falls": ["antidose"]}) + "\n")
    result = sweeps(gemma, artifact, CheckOptions(("sweeps",), spec=SPEC, sweep_templates=file, n_boot=50))
    assert result.n_templates == 1 and [c.concept for c in result.cases] == ["dose", "antidose"]
    rising = result.cases[0]
    assert list(rising.scores) == sorted(rising.scores) and rising.rho.estimate == pytest.approx(1.0)
    assert result.cases[1].rho.estimate == pytest.approx(-1.0)
    assert result.template_share.estimate == 1.0 and result.mean_signed_rho.estimate == pytest.approx(1.0)
    assert result.to_json()["cases"][0]["signed_rho"] == pytest.approx(1.0)


def test_sweep_template_without_a_slot_is_one_line_naming_file_and_line(tmp_path: Path) -> None:
    file = tmp_path / "mine.jsonl"
    file.write_text('{"id": "ok", "template": "I ran {x} km.", "values": [1, 2, 3], "rises": ["tired"]}\n'
                    '{"id": "bad", "template": "I ran far.", "values": [1, 2, 3], "rises": ["tired"]}\n')
    with pytest.raises(CheckError) as error:
        sweep_templates(CheckOptions(sweep_templates=file))
    message = str(error.value)
    assert "\n" not in message and f"{file} line 2" in message and "{x}" in message and "line 1" not in message
