"""Entry point kept for ``python benchmarks/train_step.py``: the benchmark itself is :mod:`emukg.bench.train_step`.

Same as ``python -m emukg.bench.train_step``; run from a source checkout, its own ``src/`` is used even when emukg is
not installed.
"""

import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
if (SRC / "emukg").is_dir():
    sys.path.insert(0, str(SRC))

from emukg.bench.train_step import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
