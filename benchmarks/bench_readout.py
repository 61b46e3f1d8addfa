"""``python benchmarks/bench_readout.py [--quick]``: decode latency with readout on vs off, the same code as
``amygdala bench readout`` (``amygdala.bench.readout``, installed with the package); see benchmarks/README.md."""

import sys

from amygdala.bench.readout import main

if __name__ == "__main__":
    sys.exit(main())
