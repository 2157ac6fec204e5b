"""Entry point kept for ``python benchmarks/scale.py``: the benchmark itself is :mod:`emukg.bench.scale`.

Same as ``python -m emukg.bench.scale`` (or ``emukg bench --scale``); run from a source checkout, its own ``src/``
is used even when emukg is not installed.
"""

import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
if (SRC / "emukg").is_dir():
    sys.path.insert(0, str(SRC))

from emukg.bench.scale import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
