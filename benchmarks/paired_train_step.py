"""Paired, alternating timing of the training step of two source trees (old vs new), for before/after figures.

    git worktree add /tmp/old 518f1d1
    EMUKG_DATA_DIR=../shared/datasets python benchmarks/paired_train_step.py --old /tmp/old/src --new src --pairs 4

Runs ``python -m emukg.bench.train_step`` of each tree in turn (old, new, old, new, ...) in fresh processes, each
with its own kernel cache, and prints per case the median step of each tree and the median of the per-pair ratios
new/old (below 1: faster).  The ratio of each pair is taken between runs made one after the other, so a machine
whose speed drifts between pairs still compares fairly.  ``--json F`` saves every run's figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile


def run(src: str, cache: str, args: list[str]) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        env = {**os.environ, "PYTHONPATH": src, "EMUKG_CACHE_DIR": cache}
        subprocess.run([sys.executable, "-m", "emukg.bench.train_step", *args, "--json", f.name], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return json.load(open(f.name))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", required=True, help="the old tree's src folder")
    ap.add_argument("--new", required=True, help="the new tree's src folder")
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--models", nargs="+", default=["TransE", "RotatE", "ComplEx", "DistMult"])
    ap.add_argument("--losses", nargs="+", default=["ce", "emu"])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    bench = ["--models", *args.models, "--losses", *args.losses, "--steps", str(args.steps)]
    caches = {k: tempfile.mkdtemp(prefix=f"emukg-pair-{k}-") for k in ("old", "new")}
    runs = {"old": [], "new": []}
    for i in range(args.pairs):
        for k in ("old", "new"):
            runs[k].append(run(os.path.abspath(getattr(args, k)), caches[k], bench)["results"])
        print(f"pair {i + 1}/{args.pairs} done", flush=True)
    print(f"{'case':28s} {'old ms':>8s} {'new ms':>8s} {'new/old':>8s}  (per-pair range)")
    for case in runs["old"][0]:
        old = [r[case] for r in runs["old"]]
        new = [r[case] for r in runs["new"]]
        ratios = [n / o for n, o in zip(new, old)]
        print(f"{case:28s} {statistics.median(old):8.1f} {statistics.median(new):8.1f} {statistics.median(ratios):8.3f}"
              f"  ({min(ratios):.3f}-{max(ratios):.3f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"old": args.old, "new": args.new, "runs": runs}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
