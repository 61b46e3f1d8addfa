"""The benchmarks ``amygdala bench`` runs, installed with the package (speed and memory; never run in CI).

``train`` (train vs a bare forward and vs the optional ``steering-vectors`` peer: ``peer``; its data: ``sample``;
its clocks: ``timing``; ``--random-model`` at real shapes: ``scale`` on ``random_models``) and ``readout`` (decode
latency with readout on vs off). Each module's ``main(argv) -> int`` prints one JSON object last; torch is
imported only when a benchmark runs. ``benchmarks/bench_train.py`` and ``bench_readout.py`` call the same code.
"""
