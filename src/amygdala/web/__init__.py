"""What amygdala's HTTP servers share (``serve`` and ``memory-serve``): the bearer-key check, the port probe.
"""
