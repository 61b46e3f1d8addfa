"""Logit lens on Gemma: a vector built from a token's own embedding row promotes that token, the lists are the
tokenizer's strings, and a model without an unembedding is skipped with a note."""

from __future__ import annotations

from typing import Any

from amygdala.evaluation.checks import CheckOptions
from amygdala.evaluation.checks.logit_lens import logit_lens
from amygdala.forward.models import LoadedModel
from checks_helpers import planted


def test_logit_lens_returns_the_tokenizers_strings_and_promotes_a_planted_token(gemma: LoadedModel) -> None:
    tokenizer: Any = gemma.tokenizer
    happy = tokenizer.encode(" happy", add_special_tokens=False)
    assert len(happy) == 1
    row = gemma.model.get_output_embeddings().weight[happy[0]].detach()
    artifact = planted(("happy", "unhappy"), [row, -row], gemma.hidden_size)
    result = logit_lens(gemma, artifact, CheckOptions(("logit_lens",), top_k=20))
    assert result.note is None and [e.concept for e in result.entries] == ["happy", "unhappy"]
    promoted, suppressed = result.entries
    assert len(promoted.top) == len(promoted.bottom) == 10
    assert " happy" in promoted.top and " happy" in suppressed.bottom
    vocabulary = {tokenizer.decode([i]) for i in range(len(tokenizer))}
    assert set(promoted.top) | set(promoted.bottom) <= vocabulary


def test_logit_lens_on_a_model_without_an_unembedding_is_skipped_with_a_note(gemma: LoadedModel) -> None:
    """Gemma's decoder stack alone (``Gemma3TextModel``, no LM head) is a real model without an unembedding."""
    headless = LoadedModel(gemma.model.model, gemma.tokenizer, "gemma-decoder-only", gemma.fingerprint, gemma.dtype)
    row = gemma.model.get_output_embeddings().weight[0].detach()
    result = logit_lens(headless, planted(("x",), [row], gemma.hidden_size), CheckOptions(("logit_lens",)))
    assert result.entries == () and result.skipped == ("x",)
    assert result.note is not None and "no unembedding" in result.note and "gemma-decoder-only" in result.note
    assert result.line().startswith("skipped:")
