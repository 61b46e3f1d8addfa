"""Forward-batch planning: count and padded-token caps, and the re-planning property resumes and ranks rely on."""

from __future__ import annotations

import random

import pytest

from amygdala.forward.batching import Batching, padded_tokens, plan_batches


def _sorted_order(lengths: list[int]) -> list[int]:
    return sorted(range(len(lengths)), key=lambda index: (lengths[index], index))


def test_plan_batches_by_count_cuts_every_batch_size_texts() -> None:
    lengths = [5] * 10
    assert plan_batches(range(10), lengths, Batching(batch_size=4)) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_plan_batches_by_tokens_caps_padded_tokens_and_lets_short_texts_fill_a_batch() -> None:
    lengths = [10] * 6 + [30, 30, 100]
    batches = plan_batches(_sorted_order(lengths), lengths, Batching(batch_tokens=60))
    assert batches == [[0, 1, 2, 3, 4, 5], [6, 7], [8]]
    assert all(len(b) * max(lengths[i] for i in b) <= 60 for b in batches[:2])
    assert padded_tokens(batches, lengths) == 60 + 60 + 100


def test_plan_batches_puts_a_text_longer_than_the_budget_alone() -> None:
    lengths = [3, 3, 500]
    assert plan_batches([0, 1, 2], lengths, Batching(batch_tokens=8)) == [[0, 1], [2]]


def test_plan_batches_applies_both_caps_together() -> None:
    lengths = [2] * 10
    assert [len(b) for b in plan_batches(range(10), lengths, Batching(batch_size=3, batch_tokens=100))] == [3, 3, 3, 1]


@pytest.mark.parametrize("batching", [Batching(batch_size=7), Batching(batch_tokens=700),
                                      Batching(batch_size=16, batch_tokens=900)])
@pytest.mark.parametrize("world_size", [2, 3])
def test_plan_batches_of_every_nth_batch_gives_the_same_batches(batching: Batching, world_size: int) -> None:
    """What data-parallel ranks and resumed runs rely on: re-planning whole batches reproduces them."""
    rng = random.Random(world_size)
    lengths = [rng.randint(5, 200) for _ in range(300)]
    batches = plan_batches(_sorted_order(lengths), lengths, batching)
    for rank in range(world_size):
        mine = batches[rank::world_size]
        assert plan_batches([i for b in mine for i in b], lengths, batching) == mine
    for start in range(len(batches)):  # a resumed run: the batches from any batch boundary on
        rest = [i for b in batches[start:] for i in b]
        assert plan_batches(rest, lengths, batching) == batches[start:]


def test_batching_problems_name_every_bad_cap() -> None:
    assert Batching(batch_size=0, batch_tokens=-5).problems() == ["batch_size 0 must be >= 1",
                                                                 "batch_tokens -5 must be >= 1"]
    assert Batching().problems() == []


def test_batching_defaults_to_a_token_budget_on_a_gpu_and_eight_texts_on_a_cpu() -> None:
    assert Batching().for_device("cpu") == Batching(batch_size=8, batch_tokens=None)
    gpu = Batching().for_device("cuda")
    assert gpu.batch_size is None and gpu.batch_tokens and gpu.batch_tokens >= 4096
    assert Batching(batch_size=3).for_device("cuda") == Batching(batch_size=3)
