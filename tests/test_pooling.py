"""Pooling: pooled activations against HF ``output_hidden_states`` on the real models, the pooling rules and the
spec, the readout pooling, and the chat-template guard."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from amygdala.forward.activation_cache import ActivationCache
from amygdala.forward.capture import encode_texts
from amygdala.forward.models import LoadedModel
from amygdala.forward.pooled import iter_pooled, pool_texts
from amygdala.forward.pooling import (
    PoolingError,
    PoolingSpec,
    SameTokenError,
    pool_last,
    pool_mean,
    pool_mean_last,
    pool_readout,
)

TEXTS = ["Hello world.", "I felt a deep warmth when she finally called me back!", "Why?"]
LAST, MEAN_ALL = PoolingSpec("last"), PoolingSpec("mean", skip_tokens=0)


class ForwardCounter:
    """Counts calls of a real module (a forward hook; nothing is replaced)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.calls, self.rows = 0, 0
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, _module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], _output: object) -> None:
        self.calls += 1
        self.rows += int(inputs[0].shape[0]) if inputs and isinstance(inputs[0], torch.Tensor) else 0

    def __enter__(self) -> ForwardCounter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.handle.remove()


def _hf_reference(loaded: LoadedModel, text: str, layers: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Last-token and mean hidden states ``[L, H]`` of one unpadded text via ``output_hidden_states`` (no hooks)."""
    encoded = loaded.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        hidden = loaded.model(**encoded, output_hidden_states=True).hidden_states
    last = torch.stack([hidden[layer + 1][0, -1] for layer in layers]).float()
    mean = torch.stack([hidden[layer + 1][0].float().mean(dim=0) for layer in layers])
    return last, mean


def _relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float(((actual - expected).abs().amax(dim=-1) / expected.abs().amax(dim=-1)).max())


@pytest.mark.slow
@pytest.mark.parametrize("model_name", ["gemma", "smollm2"])
def test_pool_texts_equals_hf_hidden_states_in_a_padded_batch(model_name: str, request: pytest.FixtureRequest) -> None:
    """layer_<idx> = HF hidden_states[idx+1] for every layer but the last; a padded batch (Gemma pads left,
    SmolLM2 right) gives each text what it gets alone."""
    loaded: LoadedModel = request.getfixturevalue(model_name)
    layers = list(range(loaded.n_layers - 1))
    last = pool_texts(loaded, TEXTS, layers, LAST, batch_size=len(TEXTS))
    mean = pool_texts(loaded, TEXTS, layers, MEAN_ALL, batch_size=len(TEXTS))
    for index, text in enumerate(TEXTS):
        ref_last, ref_mean = _hf_reference(loaded, text, layers)
        assert _relative_error(last[index], ref_last) < 1e-4
        assert _relative_error(mean[index], ref_mean) < 1e-4


@pytest.mark.slow
def test_pool_texts_mean_last_equals_its_mix_of_hf_hidden_states_in_a_padded_batch(gemma: LoadedModel,
                                                                                    tmp_path: Path) -> None:
    """``mean_last`` = 0.8 x the mean over the tokens after BOS + 0.2 x the last token, computed by hand from
    HF hidden states of each text alone; the activation cache keeps it apart from ``mean``."""
    layers = [0, 7, 15]
    spec = PoolingSpec("mean_last")
    pooled = pool_texts(gemma, TEXTS, layers, spec, batch_size=len(TEXTS))
    for index, text in enumerate(TEXTS):
        encoded = gemma.tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            hidden = gemma.model(**encoded, output_hidden_states=True).hidden_states
        expected = torch.stack([0.8 * hidden[layer + 1][0, 1:].float().mean(dim=0) + 0.2 * hidden[layer + 1][0, -1]
                                for layer in layers])
        assert _relative_error(pooled[index], expected) < 1e-4
    assert spec.skip == 1 and _relative_error(pooled[1], _hf_reference(gemma, TEXTS[1], layers)[1]) > 1e-2
    cache = ActivationCache(tmp_path)
    pool_texts(gemma, TEXTS, layers, PoolingSpec("mean"), cache=cache)
    assert torch.equal(pool_texts(gemma, TEXTS, layers, spec, cache=cache, batch_size=len(TEXTS)), pooled)


@pytest.mark.slow
def test_pool_texts_batch_size_and_order_change_nothing(smollm2: LoadedModel) -> None:
    texts = TEXTS + ["A quiet afternoon", "Fear crept in slowly", "Hello world."]
    layers = [3, 11]
    reference = pool_texts(smollm2, texts, layers, LAST, batch_size=1)
    batched = pool_texts(smollm2, texts, layers, LAST, batch_size=4)
    torch.testing.assert_close(batched, reference, rtol=1e-4, atol=1e-4)
    shuffled = list(range(len(texts)))
    random.Random(1).shuffle(shuffled)
    again = pool_texts(smollm2, [texts[i] for i in shuffled], layers, LAST, batch_size=4)
    assert torch.equal(again, batched[shuffled])


def test_pool_last_reads_the_last_real_token_under_left_and_right_padding() -> None:
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert torch.equal(pool_last(hidden, right), torch.stack([hidden[0, 1], hidden[1, 3]]))
    assert torch.equal(pool_last(hidden, left), torch.stack([hidden[0, 3], hidden[1, 3]]))


def test_pool_mean_skips_the_first_real_tokens_and_keeps_the_last_of_short_texts() -> None:
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    left = torch.tensor([[0, 1, 1, 1], [0, 0, 0, 1]])
    assert torch.equal(pool_mean(hidden, left), torch.stack([hidden[0, 1:].mean(0), hidden[1, 3]]))
    assert torch.equal(pool_mean(hidden, left, 1), torch.stack([hidden[0, 2:].mean(0), hidden[1, 3]]))
    right = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    assert torch.equal(pool_mean(hidden, right, 2), torch.stack([hidden[0, 2], hidden[1, 0]]))


def test_pool_mean_ignores_non_finite_values_at_pad_positions() -> None:
    hidden = torch.ones(1, 3, 2)
    hidden[0, 0] = float("nan")
    assert torch.equal(pool_mean(hidden, torch.tensor([[0, 1, 1]])), torch.ones(1, 2))


def test_iter_pooled_stops_the_forward_after_the_deepest_layer(tiny_model: LoadedModel) -> None:
    with ForwardCounter(tiny_model.layers[2]) as deeper, ForwardCounter(tiny_model.layers[1]) as deepest:
        batches = list(iter_pooled(tiny_model, TEXTS, [0, 1], batch_size=2))
    assert deepest.calls == 2 and deeper.calls == 0
    assert sorted(i for indices, _ in batches for i in indices) == [0, 1, 2]


@pytest.mark.slow
def test_chat_template_guard_refuses_the_same_end_token_before_any_forward(smollm2: LoadedModel) -> None:
    """Regression: the original trainer pooled every sample at the chat template's end-of-turn token, so
    every concept learned the same direction."""
    with ForwardCounter(smollm2.layers[0]) as counter, pytest.raises(SameTokenError, match=r"token '\\n' \(id 198\)"):
        pool_texts(smollm2, TEXTS, [3], PoolingSpec("last", chat_template=True))
    assert counter.calls == 0
    ids = encode_texts(smollm2.tokenizer, TEXTS, chat_template=True)
    assert len({row[-1] for row in ids}) == 1
    assert pool_texts(smollm2, TEXTS, [3], PoolingSpec("mean", chat_template=True)).shape == (3, 1, 576)


def test_pool_texts_refuses_texts_that_all_end_in_the_same_token_without_a_template(tiny_model: LoadedModel) -> None:
    with pytest.raises(SameTokenError, match="same token"):
        pool_texts(tiny_model, ["One.", "Two words."], [0], LAST)
    assert pool_texts(tiny_model, ["One.", "Two words!"], [0], LAST).shape == (2, 1, 64)


def test_pool_texts_rejects_bad_arguments_in_one_message(tiny_model: LoadedModel) -> None:
    with pytest.raises(ValueError, match="pooling 'max'.*batch_size 0"):
        pool_texts(tiny_model, TEXTS, [0], PoolingSpec("max"), batch_size=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"out of range.*4 layers"):
        pool_texts(tiny_model, TEXTS, [4])
    with pytest.raises(ValueError, match="no tokens"):
        pool_texts(tiny_model, ["", "x"], [0])


def test_pool_texts_max_length_pools_the_cut_text(tiny_model: LoadedModel) -> None:
    long_text = "word " * 50
    cut = pool_texts(tiny_model, [long_text, "short text"], [1], PoolingSpec("last", max_length=7))
    alone = pool_texts(tiny_model, [tiny_model.tokenizer.decode(encode_texts(tiny_model.tokenizer, [long_text])[0][:7]),
                                    "short text"], [1], LAST)
    torch.testing.assert_close(cut[0], alone[0], rtol=1e-5, atol=1e-5)


def test_pooling_spec_default_is_mean_last_without_bos_and_skip_follows_the_rule() -> None:
    """Regression: training defaulted to mean pooling while evaluation and readout fell back to ``last``. The
    default is ``mean_last`` since the study of issue 13 (README: same 5-fold AUROC as ``mean``, valence rho
    0.54 instead of 0.35)."""
    assert PoolingSpec() == PoolingSpec("mean_last", 1, False, None)
    assert PoolingSpec("last").skip_tokens == 0 and PoolingSpec("mean").skip_tokens == 1
    assert PoolingSpec("mean_last").skip_tokens == 1 and PoolingSpec("mean_last", 0).problems() == []
    assert PoolingSpec().overridden(pooling="last") == PoolingSpec("last", 0)
    assert PoolingSpec("mean", 3).overridden(chat_template=True) == PoolingSpec("mean", 3, True)
    assert PoolingSpec("mean", 3).overridden(pooling="mean", skip_tokens=2).skip == 2


def test_pooling_spec_problems_name_every_bad_field() -> None:
    problems = PoolingSpec("last", skip_tokens=2, max_length=0).problems()
    assert problems == ["skip_tokens 2 must be >= 0, and 0 unless pooling is 'mean' or 'mean_last'",
                        "max_length 0 must be >= 1 (or None for no limit)"]
    with pytest.raises(PoolingError, match="pooling 'max' is not supported"):
        pool_readout(torch.zeros(2, 1, 1), PoolingSpec("max"))  # type: ignore[arg-type]


def test_pool_readout_applies_the_training_rules_to_per_token_readouts() -> None:
    """Per-token readouts ``[tokens, layers, concepts]`` pool exactly as ``pool_last`` / ``pool_mean`` pool residuals."""
    values = torch.arange(4 * 2 * 3, dtype=torch.float32).reshape(4, 2, 3)
    assert torch.equal(pool_readout(values, LAST), values[-1])
    assert torch.equal(pool_readout(values, PoolingSpec("mean", 1)), values[1:].mean(0))
    assert torch.equal(pool_readout(values[:1], PoolingSpec("mean", 1)), values[0]), "a 1-token text keeps its token"
    mixed = pool_readout(values, PoolingSpec("mean_last"))
    torch.testing.assert_close(mixed, 0.8 * values[1:].mean(0) + 0.2 * values[-1])


def test_pool_mean_last_mixes_the_mean_after_skipping_and_the_last_real_token() -> None:
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    left = torch.tensor([[0, 1, 1, 1], [0, 0, 0, 1]])
    expected = torch.stack([0.8 * hidden[0, 2:].mean(0) + 0.2 * hidden[0, 3], hidden[1, 3]])
    torch.testing.assert_close(pool_mean_last(hidden, left, 1), expected)


class BatchShapes:
    """Records the (texts, padded width) of every forward batch reaching decoder block 0."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.shapes: list[tuple[int, int]] = []
        self.handle = module.register_forward_hook(
            lambda _m, inputs, _o: self.shapes.append((int(inputs[0].shape[0]), int(inputs[0].shape[1]))))

    def __enter__(self) -> BatchShapes:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.handle.remove()


def _texts_of_many_lengths(count: int = 24) -> list[str]:
    rng = random.Random(3)
    return [f"memo {i}: " + " ".join(["calm", "storm", "light", "rain"][rng.randrange(4)] for _ in range(rng.randint(1, 30)))
            for i in range(count)]


def test_iter_pooled_with_a_token_budget_caps_padded_tokens_and_pools_the_same_vectors(tiny_model: LoadedModel) -> None:
    texts = _texts_of_many_lengths()
    with BatchShapes(tiny_model.layers[0]) as budget:
        by_tokens = pool_texts(tiny_model, texts, [1, 3], MEAN_ALL, batch_tokens=120)
    with BatchShapes(tiny_model.layers[0]) as count:
        by_count = pool_texts(tiny_model, texts, [1, 3], MEAN_ALL, batch_size=4)
    assert all(rows * width <= 120 for rows, width in budget.shapes if rows > 1)
    assert sum(rows for rows, _ in budget.shapes) == len(texts)
    assert max(rows for rows, _ in budget.shapes) > 4, "short texts fill a batch"
    assert min(rows for rows, _ in budget.shapes) < 4, "long texts share theirs with fewer"
    assert [rows for rows, _ in count.shapes] == [4] * 6
    torch.testing.assert_close(by_tokens, by_count, rtol=1e-4, atol=1e-5)


def test_iter_pooled_in_a_world_yields_every_nth_batch_of_the_single_plan(tiny_model: LoadedModel) -> None:
    """Each data-parallel rank forwards every world_size-th planned batch: disjoint shards, the same batches."""
    from amygdala.forward.distributed import World

    texts = _texts_of_many_lengths()
    single = list(iter_pooled(tiny_model, texts, [2], MEAN_ALL, batch_size=5))
    ranks = [list(iter_pooled(tiny_model, texts, [2], MEAN_ALL, batch_size=5, world=World(rank, 2)))
             for rank in range(2)]
    assert [indices for indices, _ in ranks[0]] == [indices for indices, _ in single[0::2]]
    assert [indices for indices, _ in ranks[1]] == [indices for indices, _ in single[1::2]]
    for (_, mine), (_, alone) in zip(ranks[0] + ranks[1], single[0::2] + single[1::2], strict=True):
        assert torch.equal(mine, alone), "the same batch, forwarded alike, pools to the same bits"
