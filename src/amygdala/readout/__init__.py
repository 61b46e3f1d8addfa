"""The read-out stage: an artifact's concepts projected out of the residual stream, token by token.

``projection`` projects (torch), ``scale`` is the readout's scale (calibration, z-scores, colour; torch-free),
``generation`` generates while reading out, ``view`` shows and writes readouts, ``export`` writes other formats.
"""
