"""hack/localcluster as a library: its public surface, and its distance from the operator."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import localcluster

PACKAGE_DIR = Path(localcluster.__file__).parent
MODULES = sorted(p for p in PACKAGE_DIR.glob("*.py"))


@pytest.mark.parametrize("name", localcluster.__all__)
def test_every_public_name_resolves_to_what_its_module_defines(name: str) -> None:
    value = getattr(localcluster, name)
    if name in localcluster._MODULES:
        assert value is importlib.import_module(f"localcluster.{name}")
        assert name in localcluster.__doc__
        return
    module = importlib.import_module(f"localcluster.{localcluster._DEFINED_IN[name]}")
    assert value is getattr(module, name)
    assert name in localcluster.__doc__


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        localcluster.Nothing  # noqa: B018


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_imports_nothing_of_llmroute(path: Path) -> None:
    # It knows llmroute by what the operator writes to the cluster, so it can test the
    # operator from the outside and never drifts with its internals.
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        assert not [n for n in names if n.split(".")[0] == "llmroute"], f"line {node.lineno}"


def test_importing_the_package_loads_none_of_its_modules() -> None:
    # So `python -m localcluster.fakes` runs a module that is not already imported.
    code = "import sys, localcluster; print([m for m in sys.modules if 'localcluster.' in m])"
    child = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=PACKAGE_DIR.parent,
    )
    assert child.stdout == "[]\n"
