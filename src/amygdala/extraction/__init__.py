"""The extract stage: a memory graph (file, log, MCP server) -> ``(emotion, polarity, text)`` examples.

``sources`` reads the store into ``MemoryNode`` records, ``tags`` parses their tag lines, ``emotions`` is the
vocabulary, ``examples`` the rules and the examples files, ``selection`` the per-emotion choice, ``stage`` the
``amygdala extract`` run; ``memory_server`` serves a graph file over MCP.
"""
