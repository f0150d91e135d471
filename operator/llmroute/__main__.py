"""The `llmroute` command's entry point: the console script and `python -m llmroute`.

`pip install llmroute` brings the client and what `llmroute validate` needs; the operator and
the commands that read a cluster or load litellm need the extra `operator` (docs/development.md
says which package is where, and why). A command that reaches for a package of the extra
that is not installed ends with one line naming what to install, not with a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Final

OPERATOR_EXTRA: Final = "operator"
INSTALL_OPERATOR: Final = f"pip install 'llmroute[{OPERATOR_EXTRA}]'"
# The import names of the extra's distributions (pyproject.toml,
# [project.optional-dependencies] operator); tests/unit/test_extras.py keeps them in step.
OPERATOR_PACKAGES: Final = frozenset({"kopf", "kubernetes", "litellm", "prometheus_client"})


def missing_operator_package(error: ModuleNotFoundError) -> str | None:
    """The package of the extra whose absence raised `error`; None for any other module."""
    top_level = (error.name or "").partition(".")[0]
    return top_level if top_level in OPERATOR_PACKAGES else None


def missing_extra_message(package: str, argv: Sequence[str]) -> str:
    words = [a for a in argv if not a.startswith("-")][:1]
    command = " ".join(["llmroute", *words])
    return (
        f"{command}: the Python package {package} is missing; it comes with the operator's "
        f"dependencies: {INSTALL_OPERATOR}"
    )


def main() -> None:
    # Imported here, so that `python -m llmroute` and the console script share this guard.
    from llmroute.cli import main as command

    try:
        command()
    except ModuleNotFoundError as error:
        package = missing_operator_package(error)
        if package is None:
            raise
        sys.exit(missing_extra_message(package, sys.argv[1:]))


if __name__ == "__main__":
    main()
