"""What every ``benchmarks/<name>.py`` entry point does: run ``emukg.bench.<module>``'s ``main``.

From a source checkout its own ``src/`` goes first on the path, so the scripts run the checkout's emukg even when it
is not installed (``python -m emukg.bench.<module>`` is the same for an installed package).
"""

import importlib
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def run(module: str) -> None:
    if (SRC / "emukg").is_dir():
        sys.path.insert(0, str(SRC))
    raise SystemExit(importlib.import_module(module).main())
