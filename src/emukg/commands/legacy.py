"""``emukg legacy ...``: the reference's ``codes/run.py`` command line, verbatim (see :mod:`emukg.legacy`)."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from ..legacy import run_legacy

    return run_legacy(args.legacy_args, prog="emukg legacy")


def add_parser(sub) -> None:
    p = sub.add_parser("legacy", help="the reference's run.py flags, verbatim (e.g. --do_train -if_CE 1 -if_EMU 0.39)",
                       description="Run with the RotatE/SANS/EMU reference's flags; 'emukg legacy --help' lists them.",
                       add_help=False, prefix_chars="\0")
    p.add_argument("legacy_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=run)
