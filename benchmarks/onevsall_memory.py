"""Entry point kept for ``python benchmarks/onevsall_memory.py``: the benchmark itself is :mod:`emukg.bench.onevsall`.

Same as ``python -m emukg.bench.onevsall``; run from a source checkout, its own ``src/`` is used even when emukg is
not installed.
"""

from _entry import run

if __name__ == "__main__":
    run("emukg.bench.onevsall")
