"""amygdala: learn emotion readout vectors from an agent's memory graph and read them out of a language model.

One package per stage, meeting through files:
extraction -> forward -> training -> artifact -> evaluation -> readout -> serve / watch
(``pipeline`` runs the stages file to file, as the CLI does; ``outputs`` and ``web`` hold what several share).

Public names are imported lazily, so ``import amygdala`` (and the CLI's start) does not pay for torch or
transformers until a stage needs them, and ``amygdala.artifact`` stays usable beside another transformers.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_PUBLIC = {
    "MemoryNode": "amygdala.extraction.sources",
    "read_graph_file": "amygdala.extraction.sources.graph_file",
    "read_mcp_graph": "amygdala.extraction.sources.mcp_client",
    "MemorySource": "amygdala.extraction.sources",
    "read_memory": "amygdala.extraction.sources",
    "parse_content": "amygdala.extraction.tags",
    "Example": "amygdala.extraction.examples",
    "ExtractOptions": "amygdala.extraction.scoring",
    "read_examples": "amygdala.extraction.examples",
    "extract": "amygdala.extraction.stage",
    "LoadedModel": "amygdala.forward.models",
    "load_model": "amygdala.forward.models",
    "pool_texts": "amygdala.forward.pooled",
    "PoolingSpec": "amygdala.forward.pooling",
    "TrainingRecord": "amygdala.artifact",
    "TrainOptions": "amygdala.training.stage",
    "train": "amygdala.training.stage",
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
