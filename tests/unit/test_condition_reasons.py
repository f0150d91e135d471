"""Every condition reason the operator sets is listed in docs/operations.md, and nothing else.

The reasons live in one module, llmroute.reasons (ROUTE_REASONS and QUOTA_REASONS, by
condition type). These tests hold three things together:
- the page's tables ("## Conditions", one per kind) list exactly the registry's reasons;
- the code sets conditions only with registry names: no set_condition call (nor a wrapper's
  `reason` argument) gets a string literal, and every registry reason is used by the code
  (read from its syntax tree: `reasons.NAME`), so none is listed that the operator never sets;
- Ready's "<Condition>NotTrue" reasons cover Ready's inputs.
A new reason: a constant and a table entry in llmroute/reasons.py, a row on the page.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from llmroute import reasons
from llmroute.route.status import READY_INPUTS

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "operator" / "llmroute"
OPERATIONS = REPO / "docs" / "operations.md"
REGISTRY: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "LLMRoute": reasons.ROUTE_REASONS,
    "ModelQuota": reasons.QUOTA_REASONS,
}
# Calls whose reason argument is a condition's reason: (function name, positional index).
REASON_ARGUMENTS = {"set_condition": 3, "_set_condition": 3, "refuse": 1, "OllamaState": 1}


def documented(kind: str) -> set[tuple[str, str]]:
    """(condition, reason) of every row of the kind's table under "## Conditions"."""
    text = OPERATIONS.read_text()
    section = text[text.index("\n## Conditions\n") :]
    section = section[: section.find("\n## ", 1)]
    table = section[section.index(f"\n### {kind}\n") :]
    table = table[: table.find("\n### ", 1)]
    pairs = set()
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not cells[0].startswith("`"):
            continue
        condition = cells[0].strip("`")
        pairs |= {(condition, reason) for reason in re.findall(r"`([A-Za-z]+)`", cells[2])}
    return pairs


def registered(kind: str) -> set[tuple[str, str]]:
    return {(c, r) for c, names in REGISTRY[kind].items() for r in names}


@pytest.mark.parametrize("kind", sorted(REGISTRY))
def test_the_page_lists_every_reason_of_the_code_and_no_other(kind: str) -> None:
    page, code = documented(kind), registered(kind)
    assert not code - page, f"docs/operations.md, {kind}: add rows for {sorted(code - page)}"
    assert not page - code, f"docs/operations.md, {kind}: no such reason {sorted(page - code)}"


def package_trees() -> Iterator[tuple[Path, ast.AST]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, ast.parse(path.read_text(), str(path))


def called_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def reason_argument(call: ast.Call) -> ast.expr | None:
    for keyword in call.keywords:
        if keyword.arg == "reason":
            return keyword.value
    index = REASON_ARGUMENTS.get(called_name(call) or "")
    if index is not None and len(call.args) > index:
        return call.args[index]
    return None


def possible_values(expression: ast.expr) -> Iterator[ast.expr]:
    """What an expression may evaluate to, through `a if c else b` and `a or b`."""
    if isinstance(expression, ast.IfExp):
        yield from possible_values(expression.body)
        yield from possible_values(expression.orelse)
    elif isinstance(expression, ast.BoolOp):
        for value in expression.values:
            yield from possible_values(value)
    else:
        yield expression


def is_literal(expression: ast.expr) -> bool:
    return isinstance(expression, ast.JoinedStr) or (
        isinstance(expression, ast.Constant) and isinstance(expression.value, str)
    )


def test_conditions_get_their_reasons_from_the_registry_only() -> None:
    literals = []
    for path, tree in package_trees():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            argument = reason_argument(node)
            if argument is None:
                continue
            if any(is_literal(value) for value in possible_values(argument)):
                literals.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not literals, f"reasons written as literals (use llmroute.reasons): {literals}"


def used_reasons() -> set[str]:
    """The reasons the code names outside the registry: `reasons.NAME` (a table's values)."""
    used: set[str] = set()
    for path, tree in package_trees():
        if path.name == "reasons.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "reasons"
            ):
                value = getattr(reasons, node.attr)
                used |= {value} if isinstance(value, str) else set(dict(value).values())
    return used


def test_the_code_sets_every_registered_reason() -> None:
    listed = {r for kind in REGISTRY for _, r in registered(kind)}
    # Copied from the proxy Deployment's Available condition, not named by the code.
    copied = set(reasons.DEPLOYMENT_AVAILABLE_REASONS)
    unused = listed - copied - used_reasons()
    assert not unused, f"registered reasons the operator never sets: {sorted(unused)}"


def test_every_reason_constant_is_in_a_table() -> None:
    constants = (
        {
            value
            for name, value in vars(reasons).items()
            if name.isupper() and isinstance(value, str)
        }
        | set(reasons.NOT_TRUE.values())
        | set(reasons.DEPLOYMENT_AVAILABLE_REASONS)
    )
    listed = {r for kind in REGISTRY for _, r in registered(kind)}
    assert constants == listed


def test_ready_has_a_not_true_reason_for_each_input_but_applied() -> None:
    # A failed Applied gives Ready Applied's own reason (ApplyFailed), with its message.
    assert set(reasons.NOT_TRUE) == set(READY_INPUTS) - {"Applied"}
