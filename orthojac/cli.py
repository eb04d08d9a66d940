"""The ``orthojac`` command.

Subcommands live in their own modules; each exposes ``add_parser(subparsers)`` which registers the
subcommand and sets ``func`` (called with the parsed arguments, returns an exit code). To add one, append
its module to :data:`COMMANDS`. Modules are imported lazily, so ``orthojac --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__

# (module, help line): the module's add_parser(subparsers) registers the subcommand
COMMANDS: list[str] = [
    "orthojac.experiments.demo",
    "orthojac.experiments.reproduce",
    "orthojac.experiments.train",
    "orthojac.experiments.diagnose",
    "orthojac.experiments.hj",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orthojac",
        description="Deep networks with controlled Jacobians: build, train, reproduce, diagnose.",
    )
    parser.add_argument("--version", action="version", version=f"orthojac {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in COMMANDS:
        importlib.import_module(mod).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as e:  # user errors: one clear line, no traceback
        print(f"orthojac {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
