"""The lexical control: the bundled texts name their concept, and the false-positive rate at 90% true positives
on a real Gemma forward equals a by-hand count."""

from __future__ import annotations

import pytest
import torch

from amygdala.evaluation.lexical_control import control_texts, lexical_control
from amygdala.extraction.emotions import count_mentions
from amygdala.extraction.scoring import ExtractOptions
from amygdala.extraction.sources.graph_file import bundled_sample_path, read_graph_file
from amygdala.extraction.stage import select_examples
from amygdala.forward.models import LoadedModel
from amygdala.forward.pooled import pool_texts
from amygdala.forward.pooling import PoolingSpec
from amygdala.readout.projection import Projector, calibrated, project_pooled
from amygdala.training.directions import fit_directions
from amygdala.training.splits import LabelledTexts

LAYERS = (6, 12)
POSITIVES = {
    "sad": ["Tears ran down my face at the funeral.", "I miss her so much it hurts.",
            "Everything feels grey and empty since he left.", "I cried myself to sleep again.",
            "The old dog died this morning and the house is silent.", "Nobody came to my birthday."],
    "calm": ["I sat by the lake and breathed slowly.", "The evening was quiet and peaceful.",
             "Everything is settled; I can finally rest.", "Soft rain on the roof, a warm cup of tea.",
             "My mind is still, like water at dawn.", "We drifted gently down the river."],
}
NEUTRAL = ["The invoice lists three items.", "The train leaves from platform two.",
           "Water boils at one hundred degrees.", "The meeting is at ten tomorrow."]


def test_control_texts_name_their_concept_five_times_for_every_concept_of_the_bundled_sample() -> None:
    concepts = select_examples(read_graph_file(bundled_sample_path()), ExtractOptions()).emotions
    control = control_texts(concepts)
    assert len(control) == 5 * len(concepts)
    for item in control:
        assert count_mentions(item.text, item.concept) >= 1, item


@pytest.mark.slow
def test_lexical_control_rate_on_a_real_forward_equals_a_by_hand_count(gemma: LoadedModel) -> None:
    texts = POSITIVES["sad"] + POSITIVES["calm"] + NEUTRAL
    positive = torch.tensor([[t in POSITIVES[c] for c in ("sad", "calm")] for t in texts])
    data = LabelledTexts(("sad", "calm"), tuple(texts), tuple(texts), positive, ~positive)
    control = control_texts(data.concepts)
    spec = PoolingSpec("mean", 1)
    pooled = pool_texts(gemma, texts, LAYERS, spec)
    control_pooled = pool_texts(gemma, [item.text for item in control], LAYERS, spec)
    vectors = fit_directions(pooled, data, LAYERS, "lda_diagonal")
    stacked = torch.stack([vectors[layer] for layer in LAYERS])
    projector = calibrated(Projector(data.concepts, LAYERS, stacked, None, None), pooled)
    scores = project_pooled(pooled, projector, zscore=True).mean(dim=1)
    control_scores = project_pooled(control_pooled, projector, zscore=True).mean(dim=1)
    result = lexical_control(scores, data, control_scores, control)
    assert [entry.concept for entry in result.per_concept] == ["sad", "calm"] and result.n_texts == 10
    hits = 0
    for c, entry in enumerate(result.per_concept):
        mine = scores[positive[:, c], c]
        assert (mine >= entry.threshold).double().mean() >= 0.9 and entry.threshold in mine.tolist()
        named = control_scores[[i for i, item in enumerate(control) if item.concept == entry.concept], c]
        assert entry.false_positive_rate == pytest.approx(float((named >= entry.threshold).double().mean()))
        hits += int((named >= entry.threshold).sum())
    assert result.false_positive_rate == pytest.approx(hits / 10)
