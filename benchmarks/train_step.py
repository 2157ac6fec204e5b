"""Entry point kept for ``python benchmarks/train_step.py``: the benchmark itself is :mod:`emukg.bench.train_step`.

Same as ``python -m emukg.bench.train_step``; run from a source checkout, its own ``src/`` is used even when emukg is
not installed.
"""

from _entry import run

if __name__ == "__main__":
    run("emukg.bench.train_step")
