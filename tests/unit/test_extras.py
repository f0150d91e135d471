"""What `pip install llmroute` brings without extras, and what needs `llmroute[operator]`.

The commands run in a child Python where the extra's packages cannot be imported (None in
sys.modules), as in an installation without the extra.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import llmroute.client
from llmroute.__main__ import INSTALL_OPERATOR, OPERATOR_EXTRA, OPERATOR_PACKAGES

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples/smart-chain.yaml"
BASE_PACKAGES = frozenset({"yaml", "click", "jsonschema"})


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def import_name(requirement: str) -> str:
    distribution = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert distribution is not None, requirement
    return distribution.group(0).lower().replace("-", "_")


def without(packages: frozenset[str], code: str) -> subprocess.CompletedProcess[str]:
    """Runs `code` in a child Python that cannot import `packages`."""
    block = f"import sys\nfor name in {sorted(packages)!r}:\n    sys.modules[name] = None\n"
    return subprocess.run(
        [sys.executable, "-c", block + code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )


def llmroute_without_extra(*args: str) -> subprocess.CompletedProcess[str]:
    code = f"sys.argv = ['llmroute', *{list(args)!r}]\nfrom llmroute.__main__ import main\nmain()\n"
    return without(OPERATOR_PACKAGES, code)


def test_the_guard_knows_every_package_of_the_extra() -> None:
    extra = project()["optional-dependencies"][OPERATOR_EXTRA]
    assert {import_name(r) for r in extra} == OPERATOR_PACKAGES


def test_without_extras_nothing_of_the_operator_is_installed() -> None:
    assert {import_name(r) for r in project()["dependencies"]} == {"pyyaml", "click", "jsonschema"}


def test_the_command_is_the_guarded_entry_point() -> None:
    assert project()["scripts"] == {"llmroute": "llmroute.__main__:main"}


def test_the_client_needs_no_installed_package() -> None:
    tree = ast.parse(Path(llmroute.client.__file__).read_text())
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "the client imports nothing else of llmroute"
            modules.add((node.module or "").split(".")[0])
    assert modules <= set(sys.stdlib_module_names)
    child = without(
        OPERATOR_PACKAGES | BASE_PACKAGES,
        "from llmroute.client import LLMRouteClient\nprint(LLMRouteClient.__name__)\n",
    )
    assert (child.returncode, child.stdout, child.stderr) == (0, "LLMRouteClient\n", "")


def test_validate_works_without_the_extra() -> None:
    child = llmroute_without_extra("validate", "-f", str(EXAMPLE))
    assert child.returncode == 0, child.stderr
    assert child.stdout.endswith(": valid\n")


@pytest.mark.parametrize("output", ["k8s", "compose"])
def test_render_works_without_the_extra(output: str) -> None:
    child = llmroute_without_extra("render", "--format", output, "-f", str(EXAMPLE))
    assert child.returncode == 0, child.stderr
    assert "kind: Deployment" in child.stdout if output == "k8s" else "services:" in child.stdout


@pytest.mark.parametrize(
    ("args", "package"),
    [
        (["run"], "kopf"),
        (["status", "-A"], "kubernetes"),
        (["usage"], "kubernetes"),
        (["validate", "--check-litellm", "-f", str(EXAMPLE)], "litellm"),
    ],
)
def test_a_command_that_needs_the_extra_says_what_to_install(args: list[str], package: str) -> None:
    child = llmroute_without_extra(*args)
    assert child.returncode == 1
    assert child.stderr == (
        f"llmroute {args[0]}: the Python package {package} is missing; it comes with the "
        f"operator's dependencies: {INSTALL_OPERATOR}\n"
    )


def test_a_missing_module_outside_the_extra_is_not_hidden() -> None:
    # A broken installation must still show its traceback.
    child = without(
        frozenset({"jsonschema"}),
        f"sys.argv = ['llmroute', 'validate', '-f', {str(EXAMPLE)!r}]\n"
        "from llmroute.__main__ import main\nmain()\n",
    )
    assert child.returncode == 1
    assert "Traceback" in child.stderr
    assert "jsonschema" in child.stderr
    assert INSTALL_OPERATOR not in child.stderr
