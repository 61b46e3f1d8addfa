"""amygdala: learn emotion readout vectors from an agent's memory graph and read them out of a language model.

Stages, one module each, meeting through files:
sources -> tags -> examples -> models/activations -> directions -> artifact -> evaluation -> readout -> serve
"""

from amygdala.examples import Example, read_examples
from amygdala.models import LoadedModel, load_model
from amygdala.sources import MemoryNode

__all__ = ["Example", "LoadedModel", "MemoryNode", "load_model", "read_examples"]
__version__ = "0.1.0"
