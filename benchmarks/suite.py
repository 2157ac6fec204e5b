"""Entry point kept for ``python benchmarks/suite.py``: the benchmark itself is :mod:`emukg.bench.suite`.

Same as ``python -m emukg.bench.suite``; run from a source checkout, its own ``src/`` is used even when emukg is
not installed.
"""

from _entry import run

if __name__ == "__main__":
    run("emukg.bench.suite")
