"""The ``emukg`` command line.

Every sub-command lives in ``emukg/commands/<name>.py`` and provides ``add_parser(subparsers)``, which sets
``func`` to the module's ``handle(args) -> exit status``.  An :class:`~emukg.errors.EmukgError` anywhere becomes one
line on stderr and exit status 2; a :class:`~emukg.errors.ParamError` (a library error about a parameter) is said
with its flag (``--memory-mb``), the library having named the parameter (``memory_mb``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .version import __version__
from .errors import EmukgError, ParamError

COMMANDS = ["datasets", "train", "legacy", "evaluate", "predict", "export", "bench", "reproduce", "report", "hpo",
            "import_pykeen"]


class _Parser(argparse.ArgumentParser):
    """argparse with our error convention: one sentence, exit status 2 (argparse's own default)."""

    def error(self, message):  # noqa: D401
        self.exit(2, f"{self.prog}: error: {message}; see '{self.prog} --help'.\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="emukg", description="Knowledge-graph link prediction with EMU (Embedding MUtation).")
    parser.add_argument("--version", action="version", version=f"emukg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f".commands.{name}", __package__)
        except ModuleNotFoundError as exc:
            if exc.name == f"{__package__}.commands.{name}":
                continue
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ParamError as exc:  # a library error about a parameter: said with its flag
        print(f"emukg: error: {exc.render('cli')}", file=sys.stderr)
        return exc.exit_code
    except EmukgError as exc:
        print(f"emukg: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("emukg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
