"""Entry point kept for ``python benchmarks/scale.py``: the benchmark itself is :mod:`emukg.bench.scale`.

Same as ``python -m emukg.bench.scale`` (or ``emukg bench --scale``); run from a source checkout, its own ``src/``
is used even when emukg is not installed.
"""

from _entry import run

if __name__ == "__main__":
    run("emukg.bench.scale")
