"""The ``syncengine`` command. Each subcommand lives beside the code it drives and registers
itself here through ``register(subparsers)``; this module only assembles them."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# module -> it adds one or more subcommands with ``register(subparsers)``.
SUBCOMMAND_MODULES = (
    "syncengine.commands",  # sync, status, demo
    "syncengine.simulator.cli",  # simulate
    "syncengine.tables",  # tables create
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="syncengine",
        description="Keep a DynamoDB cache of every AWS DRS recovery instance across accounts and regions.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in SUBCOMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
