"""The product's shape, as a newcomer reads it: short functions. Modules have no line cap: a
concept that needs several files becomes a subpackage (STYLE.md), never name-prefixed siblings
split to meet a number."""

from __future__ import annotations

import ast

import pytest

from tests.cfn_yaml import ROOT

MAX_FUNCTION_LINES = 50
PRODUCT_FILES = sorted(path for package in ("syncengine", "handlers") for path in (ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", PRODUCT_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_code_shape_functions_are_at_most_50_lines(path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    functions = [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]
    lengths = {node.name: node.end_lineno - node.lineno + 1 for node in functions}
    assert {name: lines for name, lines in lengths.items() if lines > MAX_FUNCTION_LINES} == {}
