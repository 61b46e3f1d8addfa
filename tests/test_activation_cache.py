"""The activation cache: hits skip the model and equal what the model gives, keys separate recipes, bad chunks are
skipped, and the key layout of amygdala 0.1.0 is kept."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest
import torch

from amygdala.forward.activation_cache import ActivationCache, CacheKey, text_sha256
from amygdala.forward.models import LoadedModel
from amygdala.forward.pooled import pool_texts
from amygdala.forward.pooling import PoolingSpec

TEXTS = ["A calm lake at dawn", "He slammed the door!", "Rain again?", "We won the match.", "Quiet evening"]
LAST = PoolingSpec("last")


def _forwarded_rows(loaded: LoadedModel, action: object) -> int:
    rows = []
    handle = loaded.layers[0].register_forward_hook(lambda _m, inputs, _o: rows.append(inputs[0].shape[0]))
    try:
        action()
    finally:
        handle.remove()
    return sum(rows)


def test_pool_texts_with_a_cache_reuses_rows_and_forwards_only_new_texts(tiny_model: LoadedModel,
                                                                         tmp_path: Path) -> None:
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
    pool_texts(tiny_model, TEXTS, [1], LAST, cache=cache)
    assert _forwarded_rows(tiny_model, lambda: pool_texts(tiny_model, TEXTS, [1], PoolingSpec("mean"), cache=cache)) == 5
    assert _forwarded_rows(tiny_model, lambda: pool_texts(tiny_model, TEXTS, [1, 2], LAST, cache=cache)) == 5
    key = CacheKey(tiny_model.fingerprint, (1,), LAST, "float32")
    assert cache.count(key) == 5
    assert ActivationCache(tmp_path).count(CacheKey("other-model", (1,), LAST, "float32")) == 0


def test_cache_serves_fewer_layers_from_rows_that_hold_more(tiny_model: LoadedModel, tmp_path: Path) -> None:
    """Layer selection caches every layer; training and evaluation at the chosen layers read those rows instead
    of forwarding again, and get the same values a forward at those layers gives."""
    pool_texts(tiny_model, TEXTS, [0, 1, 2, 3], LAST, cache=ActivationCache(tmp_path))
    result: dict[str, torch.Tensor] = {}
    assert _forwarded_rows(tiny_model, lambda: result.update(chosen=pool_texts(
        tiny_model, TEXTS, [3, 1], LAST, cache=ActivationCache(tmp_path)))) == 0
    torch.testing.assert_close(result["chosen"], pool_texts(tiny_model, TEXTS, [3, 1], LAST), rtol=1e-5, atol=1e-6)
    assert _forwarded_rows(tiny_model, lambda: pool_texts(tiny_model, TEXTS, [3, 1], PoolingSpec("mean"),
                                                          cache=ActivationCache(tmp_path))) == 5, "other pooling"


def test_cache_skips_partial_and_corrupt_chunks(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key = CacheKey("model", (0, 1), LAST, "float32")
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


def test_cache_key_namespace_is_the_one_amygdala_0_1_0_wrote(tmp_path: Path) -> None:
    """The key is stored flat, as 0.1.0 stored it, so caches written by that release are still found."""
    key = CacheKey("f" * 64, (1, 3), PoolingSpec("mean", 1, True, 64), "bfloat16")
    flat = {"model_fingerprint": "f" * 64, "layers": [1, 3], "pooling": "mean", "skip_tokens": 1,
            "chat_template": True, "dtype": "bfloat16", "max_length": 64}
    assert key.namespace() == hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()[:32]
    ActivationCache(tmp_path).store(key, [text_sha256("a")], torch.zeros(1, 2, 3))
    assert json.loads((tmp_path / key.namespace() / "key.json").read_text()) == flat
