"""``emukg report RUN_DIR...``: results table (Markdown, CSV) and validation-MRR plots."""

from __future__ import annotations

import argparse


def handle(args: argparse.Namespace) -> int:
    from ..reporting import write_report

    result = write_report(args.run_dirs, args.out, plots=not args.no_plots)
    print(result["markdown_text"])
    for kind, path in result["files"].items():
        print(f"wrote {kind}: {path}")
    if not args.no_plots and not any(k.startswith("plot") for k in result["files"]):
        print("no plots: install matplotlib (pip install -e '.[plot]') or no run has validation metrics")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="results table (Markdown, CSV) and plots from run folders",
                       description="Build the results table of several runs (baseline vs EMU) and plots of validation MRR.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", default="report", help="output folder (default ./report)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.set_defaults(func=handle)
