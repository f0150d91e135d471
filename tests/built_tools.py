"""The pinned tool binaries a test needs (hack/build-tools.sh builds them)."""

from __future__ import annotations

import os

import pytest

from localcluster import tools


def require_tools(*names: str) -> None:
    """Skip the test when a tool is not built; fail it under CI, which builds them all.

    No names: every tool the local cluster runs.
    """
    missing = tools.missing(names) if names else tools.missing()
    if missing:
        message = f"missing {', '.join(missing)}; build them with `{tools.BUILD_COMMAND}`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
