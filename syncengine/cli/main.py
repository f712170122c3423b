"""The ``syncengine`` command. Each subcommand lives beside the code it drives and registers
itself here through ``register(subparsers)``; this module only assembles them.

The operator's commands (``sync``, ``status``) ship with the product. The dev commands
(``simulate``, ``demo``, ``tables``) live in the ``devtools`` package, which a development
install carries and the Lambda package does not: they are offered only when it is importable.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# module -> it adds one or more subcommands with ``register(subparsers)``.
PRODUCT_COMMAND_MODULES = ("syncengine.cli.commands",)  # sync, status
DEV_COMMAND_MODULES = (
    "devtools.demo",  # demo
    "devtools.simulator.cli",  # simulate
    "devtools.tables",  # tables create, tables delete
)


def command_modules() -> tuple[str, ...]:
    """The modules whose commands this install offers: the dev ones only beside ``devtools``."""
    try:
        importlib.import_module("devtools")
    except ModuleNotFoundError:
        return PRODUCT_COMMAND_MODULES
    return PRODUCT_COMMAND_MODULES + DEV_COMMAND_MODULES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="syncengine",
        description="Keep a DynamoDB cache of every AWS DRS recovery instance across accounts and regions.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in command_modules():
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
