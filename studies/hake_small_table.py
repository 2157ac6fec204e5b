"""Table of studies/hake_small_study.sh: test metrics of the best-valid model, mean ± sd over seeds.

usage: python studies/hake_small_table.py OUTDIR
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def main(argv=None) -> int:
    outdir = Path((argv or sys.argv[1:])[0])
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for res in sorted(outdir.glob("HAKE-*-seed*/results.json")):
        _, ds, kind, _ = res.parent.name.split("-")
        out = json.loads(res.read_text())
        groups[(ds, kind)].append({"best_step": out["best_step"], "valid": out["valid"]["MRR"], **out["test"]})
    cell = lambda xs: f"{statistics.mean(xs):.4f} ± {statistics.stdev(xs):.4f}" if len(xs) > 1 else f"{xs[0]:.4f}"
    print("| dataset | loss | seeds | valid MRR | test MRR | test H@1 | test H@3 | test H@10 | best steps |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (ds, kind), rows in sorted(groups.items()):
        col = lambda k: cell([r[k] for r in rows])
        print(f"| {ds} | {'CE + EMU' if kind == 'emu' else 'CE'} | {len(rows)} | {col('valid')} | {col('MRR')} | "
              f"{col('HITS@1')} | {col('HITS@3')} | {col('HITS@10')} | {', '.join(str(r['best_step']) for r in rows)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
