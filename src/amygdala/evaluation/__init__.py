"""The evaluate stage: held-out separation, layer choice, cross-talk and generalisation, and the report.

``metrics`` are plain functions, ``crossval`` k-fold scoring, ``valence`` and ``lexical_control`` the
out-of-distribution checks, ``stage`` runs ``amygdala eval``, ``report`` writes report.json/html and tables.
"""
