"""The activation cache: pooled per-text activations on disk, so a rerun skips the model.

Layout: ``<cache_dir>/<namespace>/chunk-<sha>.safetensors``, where ``namespace`` is a hash of everything that
changes the pooled vectors (model fingerprint, layers, the ``PoolingSpec``, forward dtype). ``key.json`` beside
the chunks spells the key out, flat, as amygdala 0.1.0 wrote it, so its caches stay valid. Each chunk holds one
forward batch: tensor ``pooled`` ``[n_texts, n_layers, hidden]`` fp32 and, in its metadata, the sha256 of each
text (row order). Chunks are written atomically as batches complete, so a killed run leaves only whole chunks
behind and a rerun resumes after the last one. The cache is an explicit object passed to the stage that uses
it; no global state.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from amygdala.outputs import atomic_write_bytes

if TYPE_CHECKING:
    from amygdala.pooling import PoolingSpec

logger = logging.getLogger(__name__)

_TENSOR = "pooled"
_HASHES = "text_sha256"
_KEEP_CHUNKS = 8


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CacheKey:
    """Everything besides the text that determines a pooled activation."""

    model_fingerprint: str
    layers: tuple[int, ...]
    spec: PoolingSpec
    dtype: str

    def fields(self) -> dict[str, Any]:
        """The key as one flat JSON object (the 0.1.0 layout, so its namespaces are unchanged)."""
        return {"model_fingerprint": self.model_fingerprint, "layers": list(self.layers),
                "pooling": self.spec.pooling, "skip_tokens": self.spec.skip, "chat_template": self.spec.chat_template,
                "dtype": self.dtype, "max_length": self.spec.max_length}

    def namespace(self) -> str:
        return hashlib.sha256(json.dumps(self.fields(), sort_keys=True).encode()).hexdigest()[:32]


class ActivationCache:
    """Pooled activations keyed by ``CacheKey`` and text sha256, stored as safetensors chunk files."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._index: dict[str, dict[str, tuple[Path, int]]] = {}
        self._chunks: OrderedDict[Path, torch.Tensor] = OrderedDict()

    def _folder(self, key: CacheKey) -> Path:
        return self.directory / key.namespace()

    def _rows(self, key: CacheKey) -> dict[str, tuple[Path, int]]:
        """text sha256 -> (chunk file, row), read from chunk headers once per key."""
        namespace = key.namespace()
        if namespace not in self._index:
            rows: dict[str, tuple[Path, int]] = {}
            for path in sorted(self._folder(key).glob("chunk-*.safetensors")):
                for row, digest in enumerate(_chunk_hashes(path)):
                    rows.setdefault(digest, (path, row))
            self._index[namespace] = rows
        return self._index[namespace]

    def count(self, key: CacheKey) -> int:
        """How many texts have pooled activations under ``key``."""
        return len(self._rows(key))

    def lookup(self, key: CacheKey, digests: list[str]) -> list[torch.Tensor | None]:
        """The cached ``[n_layers, hidden]`` fp32 row of each text, or None where it is missing."""
        rows = self._rows(key)
        found: list[torch.Tensor | None] = []
        for digest in digests:
            where = rows.get(digest)
            found.append(None if where is None else self._chunk(where[0])[where[1]])
        return found

    def store(self, key: CacheKey, digests: list[str], pooled: torch.Tensor) -> None:
        """Write one chunk atomically: ``pooled`` ``[len(digests), n_layers, hidden]``."""
        if pooled.shape[0] != len(digests) or pooled.shape[1] != len(key.layers):
            raise ValueError(f"a chunk of {len(digests)} texts x {len(key.layers)} layers cannot hold pooled "
                             f"activations shaped {tuple(pooled.shape)}")
        folder = self._folder(key)
        if not (folder / "key.json").exists():
            atomic_write_bytes(folder / "key.json", (json.dumps(key.fields(), indent=2) + "\n").encode())
        name = hashlib.sha256("\n".join(digests).encode()).hexdigest()[:24]
        path = folder / f"chunk-{name}.safetensors"
        data = save({_TENSOR: pooled.detach().to("cpu", torch.float32).contiguous()},
                    metadata={_HASHES: json.dumps(digests)})
        atomic_write_bytes(path, data)
        rows = self._rows(key)
        for row, digest in enumerate(digests):
            rows.setdefault(digest, (path, row))

    def _chunk(self, path: Path) -> torch.Tensor:
        """Load a chunk's tensor, keeping the few most recent in memory (lookups walk chunks in order)."""
        if path in self._chunks:
            self._chunks.move_to_end(path)
            return self._chunks[path]
        tensor = load_file(str(path))[_TENSOR]
        self._chunks[path] = tensor
        if len(self._chunks) > _KEEP_CHUNKS:
            self._chunks.popitem(last=False)
        return tensor


def _chunk_hashes(path: Path) -> list[str]:
    """The text hashes a chunk holds, from its header only; an unreadable chunk is skipped with a warning."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            digests = json.loads((handle.metadata() or {})[_HASHES])
            rows = handle.get_slice(_TENSOR).get_shape()[0]
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        logger.warning("ignoring unreadable activation-cache chunk %s (%s)", path, exc)
        return []
    if rows != len(digests):
        logger.warning("ignoring activation-cache chunk %s: %d rows for %d texts", path, rows, len(digests))
        return []
    return [str(digest) for digest in digests]
