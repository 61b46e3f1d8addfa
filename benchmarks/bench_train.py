"""``python benchmarks/bench_train.py [--quick]``: the train-stage benchmark, the same code as ``amygdala bench
train`` (``amygdala.bench.train``, installed with the package); see its docstring and benchmarks/README.md."""

import sys

from amygdala.bench.train import main

if __name__ == "__main__":
    sys.exit(main())
