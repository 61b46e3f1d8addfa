"""Outputs: every file amygdala writes appears whole or not at all (``atomic``), and a set of files changes as
one set (``publish``).
"""
