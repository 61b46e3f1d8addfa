"""The activation cache: hits skip the model and equal what the model gives, keys separate recipes, bad chunks are skipped."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from amygdala.activation_cache import ActivationCache, CacheKey, text_sha256
from amygdala.activations import pool_texts
from amygdala.models import LoadedModel

TEXTS = ["A calm lake at dawn", "He slammed the door!", "Rain again?", "We won the match.", "Quiet evening"]


def _forwarded_rows(loaded: LoadedModel, action: object) -> int:
    rows = []
    handle = loaded.layers[0].register_forward_hook(lambda _m, inputs, _o: rows.append(inputs[0].shape[0]))
    try:
        action()
    finally:
        handle.remove()
    return sum(rows)


def test_pool_texts_with_a_cache_reuses_rows_and_forwards_only_new_texts(tiny_model: LoadedModel, tmp_path: Path) -> None:
    cache = ActivationCache(tmp_path)
    result: dict[str, torch.Tensor] = {}
    assert _forwarded_rows(tiny_model, lambda: result.update(first=pool_texts(
        tiny_model, TEXTS[:3], [1, 2], batch_size=2, cache=cache))) == 3
    assert _forwarded_rows(tiny_model, lambda: result.update(second=pool_texts(
        tiny_model, TEXTS, [1, 2], batch_size=2, cache=ActivationCache(tmp_path)))) == 2
    assert torch.equal(result["second"][:3], result["first"])
    torch.testing.assert_close(result["second"], pool_texts(tiny_model, TEXTS, [1, 2], batch_size=2))


def test_cache_keys_separate_pooling_layers_and_model(tiny_model: LoadedModel, tmp_path: Path) -> None:
    cache = ActivationCache(tmp_path)
    pool_texts(tiny_model, TEXTS, [1], cache=cache)
    assert _forwarded_rows(tiny_model, lambda: pool_texts(tiny_model, TEXTS, [1], pooling="mean", cache=cache)) == 5
    assert _forwarded_rows(tiny_model, lambda: pool_texts(tiny_model, TEXTS, [1, 2], cache=cache)) == 5
    key = CacheKey(tiny_model.fingerprint, (1,), "last", 0, False, "float32", None)
    assert cache.count(key) == 5
    assert ActivationCache(tmp_path).count(CacheKey("other-model", (1,), "last", 0, False, "float32", None)) == 0


def test_cache_skips_partial_and_corrupt_chunks(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key = CacheKey("model", (0, 1), "last", 0, False, "float32", None)
    cache = ActivationCache(tmp_path)
    cache.store(key, [text_sha256("a"), text_sha256("b")], torch.arange(12.0).reshape(2, 2, 3))
    folder = tmp_path / key.namespace()
    (folder / ".chunk-x.safetensors.tmp").write_bytes(b"\x01\x02")
    (folder / "chunk-broken.safetensors").write_bytes(b"garbage")
    fresh = ActivationCache(tmp_path)
    with caplog.at_level(logging.WARNING):
        rows = fresh.lookup(key, [text_sha256("b"), text_sha256("c")])
    assert torch.equal(rows[0], torch.arange(6.0, 12.0).reshape(2, 3)) and rows[1] is None
    assert "chunk-broken.safetensors" in caplog.text
