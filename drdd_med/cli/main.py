"""``drdd-med``: the command-line entry point.

Each subcommand lives in ``drdd_med/cli/<name>.py`` and defines ``add_parser(subparsers)``, which registers its
parser and sets ``func=run`` with ``run(args) -> int``. Adding a subcommand = adding its module name to
:data:`SUBCOMMANDS`. Subcommand modules import heavy dependencies inside ``run`` so that ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from drdd_med.cli.options import user_error

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

#: Module names under ``drdd_med.cli``, in help order.
SUBCOMMANDS: tuple[str, ...] = ("phantom", "montage", "spec", "pacs_batch", "translate", "evaluate", "export")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    from drdd_med import __version__

    parser = argparse.ArgumentParser(
        prog="drdd-med",
        description="DRDD (Decoupled Residual Denoising Diffusion) toolkit for MR->CT synthetic CT, built on MONAI.",
        epilog="Run 'drdd-med <command> --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO level) to stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    for name in SUBCOMMANDS:
        importlib.import_module(f"drdd_med.cli.{name}").add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the subcommand and return its exit status.

    Errors in user input (``ValueError``: bad spec, bad DICOM, bad option) print one message to stderr and return 2.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except ValueError as exc:
        return user_error(args.command, exc)


if __name__ == "__main__":
    sys.exit(main())
