"""Entry point kept for ``python benchmarks/sans_build.py``: the benchmark itself is :mod:`emukg.bench.sans_build`.

Same as ``python -m emukg.bench.sans_build``; run from a source checkout, its own ``src/`` is used even when emukg is
not installed.
"""

from _entry import run

if __name__ == "__main__":
    run("emukg.bench.sans_build")
