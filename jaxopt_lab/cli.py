"""The ``jaxopt-lab`` command line: ``train | compare | landscape | minimize | bench``.

Each subcommand is one ``_add_<name>(subparsers)`` function that declares its arguments
and sets ``func`` to the function that runs it. Heavy modules (TensorFlow, Flax,
matplotlib) are imported inside those functions so ``jaxopt-lab --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxopt-lab",
        description="JAX optimization lab: train, compare and benchmark optimizers.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in COMMANDS:
        add_command(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


# The subcommands, in the order `jaxopt-lab --help` lists them (defined above).
COMMANDS: tuple = ()

if __name__ == "__main__":
    sys.exit(main())
