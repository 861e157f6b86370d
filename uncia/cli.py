"""The `uncia` command: one entry point, one subcommand per job.

Each subcommand lives in its own module under `uncia.commands` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable taking the parsed
arguments and returning the process exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from uncia import __version__
from uncia.logs import setup_logging

# Order is the order shown in `uncia --help`.
COMMANDS = (
    "provision",
    "selftest",
    "budget",
    "gateway",
    "camera",
    "status",
    "export",
    "uplink",
    "fixes",
    "sim",
    "demo",
)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="uncia",
        description="Field firmware of the uncia snow-leopard monitoring network.",
    )
    parser.add_argument("--version", action="version", version=f"uncia {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail (default: info)")
    parser.add_argument(
        "--unit",
        action="append",
        metavar="ID",
        dest="log_units",
        help="log only lines about this unit (repeatable); errors are always shown",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"uncia.commands.{name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    setup_logging(verbose=args.verbose, units=args.log_units or ())
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
