"""Entry point kept for ``python benchmarks/load_dataset.py``: the benchmark itself is :mod:`emukg.bench.load_dataset`.

Same as ``python -m emukg.bench.load_dataset``; run from a source checkout, its own ``src/`` is used even when emukg is
not installed.
"""

from _entry import run

if __name__ == "__main__":
    run("emukg.bench.load_dataset")
