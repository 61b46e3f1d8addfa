"""amygdala: learn emotion readout vectors from an agent's memory graph and read them out of a language model.

Stages, one module each, meeting through files:
sources -> tags -> examples -> extraction -> models -> capture/pooling -> directions -> training -> artifact
-> evaluation -> readout -> serve (``pipeline`` runs the stages file to file, as the CLI does)

Public names are imported lazily, so ``import amygdala`` (and the CLI's start) does not pay for torch or
transformers until a stage needs them, and ``amygdala.artifact`` stays usable beside another transformers.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_PUBLIC = {
    "MemoryNode": "amygdala.sources",
    "read_graph_file": "amygdala.sources.graph_file",
    "read_mcp_graph": "amygdala.sources.mcp_client",
    "MemorySource": "amygdala.sources",
    "read_memory": "amygdala.sources",
    "parse_content": "amygdala.tags",
    "Example": "amygdala.examples",
    "ExtractOptions": "amygdala.examples",
    "read_examples": "amygdala.examples",
    "extract": "amygdala.extraction",
    "LoadedModel": "amygdala.models",
    "load_model": "amygdala.models",
    "pool_texts": "amygdala.pooling",
    "PoolingSpec": "amygdala.pooling",
    "TrainingRecord": "amygdala.artifact",
    "TrainOptions": "amygdala.training",
    "train": "amygdala.training",
    "ReadoutArtifact": "amygdala.artifact",
    "load_artifact": "amygdala.artifact",
    "save_artifact": "amygdala.artifact",
}

__all__ = sorted(_PUBLIC)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'amygdala' has no attribute {name!r}")
    return getattr(import_module(_PUBLIC[name]), name)
