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
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from amygdala.forward.pooling import PoolingSpec
from amygdala.outputs.atomic import atomic_write_bytes

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


@dataclass(frozen=True)
class _Row:
    """Where a text's pooled row lives: a chunk file, the row in it, and the layer columns to take (None: all)."""

    path: Path
    row: int
    columns: tuple[int, ...] | None


class ActivationCache:
    """Pooled activations keyed by ``CacheKey`` and text sha256, stored as safetensors chunk files."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._index: dict[str, dict[str, _Row]] = {}
        self._chunks: OrderedDict[Path, torch.Tensor] = OrderedDict()

    def _folder(self, key: CacheKey) -> Path:
        return self.directory / key.namespace()

    def _rows(self, key: CacheKey) -> dict[str, _Row]:
        """text sha256 -> where its row is, read from chunk headers once per key: under ``key`` itself, else
        under a key that differs only in holding more layers (layer selection pools every layer; training and
        evaluation then read their layers from those rows instead of forwarding again)."""
        namespace = key.namespace()
        if namespace not in self._index:
            rows: dict[str, _Row] = {}
            for folder, columns in [(self._folder(key), None), *self._supersets(key)]:
                for path in sorted(folder.glob("chunk-*.safetensors")):
                    for row, digest in enumerate(_chunk_hashes(path)):
                        rows.setdefault(digest, _Row(path, row, columns))
            self._index[namespace] = rows
        return self._index[namespace]

    def _supersets(self, key: CacheKey) -> list[tuple[Path, tuple[int, ...]]]:
        """Folders whose key equals ``key`` but for more layers, with the columns of ``key``'s layers in them."""
        wanted = {name: value for name, value in key.fields().items() if name != "layers"}
        found = []
        for path in sorted(self.directory.glob("*/key.json")):
            try:
                fields = json.loads(path.read_text(encoding="utf-8"))
                layers = [int(layer) for layer in fields.pop("layers")]
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue
            if fields == wanted and path.parent != self._folder(key) and set(key.layers) <= set(layers):
                found.append((path.parent, tuple(layers.index(layer) for layer in key.layers)))
        return found

    def contains(self, key: CacheKey, digests: list[str]) -> list[bool]:
        """Whether each text has a cached row under ``key`` (chunk headers only; no tensor is read)."""
        rows = self._rows(key)
        return [digest in rows for digest in digests]

    def count(self, key: CacheKey) -> int:
        """How many texts have pooled activations under ``key``."""
        return len(self._rows(key))

    def lookup(self, key: CacheKey, digests: list[str]) -> list[torch.Tensor | None]:
        """The cached ``[n_layers, hidden]`` fp32 row of each text, or None where it is missing."""
        rows = self._rows(key)
        found: list[torch.Tensor | None] = []
        for digest in digests:
            where = rows.get(digest)
            if where is None:
                found.append(None)
                continue
            row = self._chunk(where.path)[where.row]
            found.append(row if where.columns is None else row[list(where.columns)])
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
            rows.setdefault(digest, _Row(path, row, None))

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


class CacheWriter:
    """Stores forwarded batches in a cache (or nowhere, without one). From a GPU the copy to the CPU is queued
    into pinned memory behind an event and the chunk is written once the copy is done, so the next forward never
    waits for it; ``flush(wait=True)`` writes whatever is left (also after an error: what completed is kept)."""

    def __init__(self, cache: ActivationCache | None, key: CacheKey) -> None:
        self.cache, self.key = cache, key
        self.pending: deque[tuple[torch.cuda.Event, list[str], torch.Tensor]] = deque()

    def add(self, digests: list[str], pooled: torch.Tensor) -> None:
        if self.cache is None:
            return
        if pooled.device.type != "cuda":
            self.cache.store(self.key, digests, pooled)
            return
        host = torch.empty(pooled.shape, dtype=pooled.dtype, pin_memory=True)
        host.copy_(pooled, non_blocking=True)
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(pooled.device))
        self.pending.append((event, digests, host))
        self.flush(wait=False)

    def flush(self, wait: bool) -> None:
        """Write the chunks whose copies are done (every pending one when ``wait``), in order."""
        while self.cache is not None and self.pending and (wait or self.pending[0][0].query()):
            event, digests, host = self.pending.popleft()
            event.synchronize()
            self.cache.store(self.key, digests, host)
