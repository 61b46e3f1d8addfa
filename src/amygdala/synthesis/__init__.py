"""Synthetic examples: stories per emotion x topic and neutral dialogues, written by any OpenAI-compatible
endpoint, filtered, split by topic and published as an examples dir (``amygdala synthesize``).

Modules along the data flow: ``prompts`` (the editable templates and topics, the requests), ``writer`` (the
endpoint: concurrency, retries), ``journal`` (crash-safe replies), ``filters`` (what is dropped and why),
``rows`` (examples per emotion, topic splits, which emotions) and ``stage`` (``synthesize``).
"""
