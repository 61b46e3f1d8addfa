"""What amygdala's HTTP servers share (``serve`` and ``memory-serve``, and the vLLM plugin where it can): the
bearer key and the one no-key rule (``auth``), the JSON they send (``payloads``), the port probe (``ports``).
"""
