"""The ``syncengine`` command: operator commands always, dev commands only beside ``devtools``."""

from __future__ import annotations

import os
import subprocess
import sys

from syncengine.cli.main import build_parser

# A fresh interpreter in which ``devtools`` cannot be found, as in the Lambda package.
WITHOUT_DEVTOOLS = """
import importlib.abc, sys
class HideDevtools(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "devtools" or name.startswith("devtools."):
            raise ModuleNotFoundError(name)
        return None
sys.meta_path.insert(0, HideDevtools())
from syncengine.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def _subcommands() -> set[str]:
    parser = build_parser()
    (action,) = [a for a in parser._actions if a.dest == "command"]
    return set(action.choices)


def test_cli_offers_dev_commands_with_devtools_installed() -> None:
    assert _subcommands() == {"sync", "status", "demo", "simulate", "tables"}


def test_cli_offers_only_operator_commands_without_devtools() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    done = subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", WITHOUT_DEVTOOLS, "--help"], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "sync" in done.stdout
    assert "demo" not in done.stdout
    assert "simulate" not in done.stdout
    assert "tables" not in done.stdout


def test_cli_without_rich_exits_with_the_extra_to_install() -> None:
    """rich is the ``cli`` extra, not a runtime dependency: without it the commands say what to
    install instead of failing with a traceback (and the module still imports)."""
    code = (
        "import sys\nsys.modules['rich'] = None\nimport syncengine.cli.commands as c\n"
        "try:\n    c.console()\nexcept SystemExit as exc:\n    print(exc.code)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)  # noqa: S603
    assert "recovery-instance-sync[cli]" in done.stdout
