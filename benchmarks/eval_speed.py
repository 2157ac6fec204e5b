"""Entry point kept for ``python benchmarks/eval_speed.py``: the benchmark itself is :mod:`emukg.bench.eval_speed`.

Same as ``python -m emukg.bench.eval_speed``; run from a source checkout, its own ``src/`` is used even when emukg is
not installed.
"""

from _entry import run

if __name__ == "__main__":
    run("emukg.bench.eval_speed")
