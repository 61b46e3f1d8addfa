"""Top-activating tokens on Gemma: the best positions per concept, in context, and a corpus that is not text is
refused in one line naming it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from amygdala.evaluation.checks import CheckError, CheckOptions
from amygdala.evaluation.checks.top_tokens import corpus_texts, top_tokens
from amygdala.forward.models import LoadedModel
from amygdala.readout.attach import read_text
from amygdala.readout.projection import ReadoutOptions
from checks_helpers import SPEC, planted


def test_top_tokens_are_the_highest_positions_of_the_per_token_readout(gemma: LoadedModel, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("The volcano erupted and lava poured into the sea.\n{\"text\": \"We ate cake at the party.\"}\n")
    generator = torch.Generator().manual_seed(1)
    artifact = planted(("a", "b"), list(torch.randn((2, gemma.hidden_size), generator=generator)), gemma.hidden_size)
    options = CheckOptions(("top_tokens",), spec=SPEC, corpus=corpus, corpus_sentences=3, top_k=4)
    result = top_tokens(gemma, artifact, options)
    assert result.n_texts == 5 and result.sources == ("rated sentences", str(corpus))
    texts = [text for _, text in corpus_texts(options)]
    for c, hits in enumerate(result.hits):
        assert len(hits) == 4 and [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        for hit in hits:
            readout = read_text(gemma, artifact, texts[hit.text_index], ReadoutOptions(), spec=SPEC)
            values = readout.values.mean(dim=1)[1:, c]
            assert hit.position == int(values.argmax()) + 1 and hit.token == readout.tokens[hit.position]
            assert hit.score == pytest.approx(float(values.max()), abs=1e-5)


def test_top_tokens_corpus_that_is_not_text_is_one_line_naming_it(tmp_path: Path) -> None:
    binary = tmp_path / "weights.bin"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    with pytest.raises(CheckError) as error:
        corpus_texts(CheckOptions(corpus=binary))
    assert "\n" not in str(error.value) and str(binary) in str(error.value) and "not text" in str(error.value)
