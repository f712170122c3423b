"""Load CloudFormation YAML templates in tests.

A safe YAML loader that also accepts the short-form intrinsic tags (``!Ref``, ``!Sub``,
``!GetAtt`` ...) and turns each into its long form (``{"Ref": ...}``, ``{"Fn::Sub": ...}``), so
a test inspects one shape whichever form a template author used.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from devtools.tables import CloudFormationLoader
from devtools.tables import load_template as read_template

ROOT = Path(__file__).resolve().parent.parent
CFN_DIR = ROOT / "cfn"


# The same loader `syncengine tables create` reads the database stack with: one parser of the
# templates for production code and tests.
CloudFormationYamlLoader = CloudFormationLoader


def load_template(path: str | Path) -> dict[str, Any]:
    """One template as plain dicts and lists (intrinsics in long form), read by the same function
    ``syncengine tables create`` uses; a relative path is under cfn/."""
    path = Path(path)
    return read_template(path if path.is_absolute() else CFN_DIR / path)


def resources_of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    """The template's resources of one type, by logical id."""
    return {
        logical_id: resource
        for logical_id, resource in (template.get("Resources") or {}).items()
        if resource.get("Type") == resource_type
    }


def walk(node: Any) -> Iterator[Any]:
    """Every dict, list and scalar under ``node``, depth first."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)
