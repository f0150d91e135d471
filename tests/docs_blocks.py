"""The shell commands that take a reader from nothing to a Ready route in a cluster, as the
README's quick start and docs/install.md write them.

One reading of the documents for the unit test that checks them against the examples and for
the e2e test that runs them verbatim.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
INSTALL = REPO / "docs" / "install.md"

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
# The install page's path ends with the command that waits for the route to be Ready.
_READY_WAIT = re.compile(r"kubectl .*wait llmroute/\S+ --for=condition=Ready")


def fenced_blocks(markdown: str, language: str) -> list[str]:
    return [body for lang, body in _FENCE.findall(markdown) if lang == language]


def _section(markdown: str, heading: str) -> str:
    start = markdown.index(f"\n{heading}\n")
    end = markdown.find("\n## ", start + 1)
    return markdown[start : end if end >= 0 else None]


def readme_cluster_script() -> str:
    """The README's "Quick start" block."""
    (block,) = fenced_blocks(_section(README.read_text(), "## Quick start"), "bash")
    return block


def install_cluster_script() -> str:
    """docs/install.md's blocks, in order, up to the one that waits for Ready."""
    blocks = []
    for block in fenced_blocks(INSTALL.read_text(), "bash"):
        blocks.append(block)
        if _READY_WAIT.search(block):
            return "".join(blocks)
    raise AssertionError("docs/install.md never waits for the route to be Ready")


SCRIPTS = {"README.md": readme_cluster_script, "docs/install.md": install_cluster_script}


def commands(script: str) -> list[list[str]]:
    """Each command line of a script as words (continuation lines joined, comments dropped).
    Lines that are no shell words (prose around commands, in a comment) are left out."""
    found = []
    for line in script.replace("\\\n", " ").splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        if words:
            found.append(words)
    return found


@dataclass(frozen=True)
class HelmRelease:
    name: str
    chart: str
    namespace: str


def _option(words: list[str], *names: str) -> str | None:
    for i, word in enumerate(words):
        for name in names:
            if word == name and i + 1 < len(words):
                return words[i + 1]
            if word.startswith(f"{name}="):
                return word.split("=", 1)[1]
    return None


def helm_installs(script: str) -> list[HelmRelease]:
    found = []
    for words in commands(script):
        if words[:2] == ["helm", "install"]:
            positional = [w for w in words[2:] if not w.startswith("-")]
            namespace = _option(words, "-n", "--namespace") or "default"
            found.append(HelmRelease(positional[0], positional[1], namespace))
    return found


def created_secrets(script: str) -> dict[str, set[str]]:
    """Secret name -> keys, for each `kubectl create secret generic` of the script."""
    secrets: dict[str, set[str]] = {}
    for words in commands(script):
        if words[:4] != ["kubectl", "create", "secret", "generic"]:
            continue
        keys = secrets.setdefault(words[4], set())
        for word in words[5:]:
            for flag in ("--from-literal=", "--from-file="):
                if word.startswith(flag):
                    keys.add(word[len(flag) :].split("=", 1)[0])
    return secrets


def applied_files(script: str) -> list[Path]:
    return [
        REPO / path
        for words in commands(script)
        if words[:2] == ["kubectl", "apply"]
        for path in [_option(words, "-f", "--filename")]
        if path
    ]


def routes(paths: list[Path]) -> list[dict[str, Any]]:
    return [
        doc
        for path in paths
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc.get("kind") == "LLMRoute"
    ]


def secret_references(obj: Any) -> Iterator[tuple[str, str]]:
    """(Secret name, key) of every `...SecretRef: {name, key}` in a manifest."""
    if isinstance(obj, dict):
        for field, value in obj.items():
            if field.endswith("SecretRef") and isinstance(value, dict) and "key" in value:
                yield value["name"], value["key"]
            else:
                yield from secret_references(value)
    elif isinstance(obj, list):
        for item in obj:
            yield from secret_references(item)
