"""The README's quick start and docs/install.md agree with the examples they apply: every
Secret and key a route references is created by the same commands, and the commands wait for
the route to be Ready. tests/e2e/test_docs_cluster_path_runs.py runs the same commands."""

from __future__ import annotations

import pytest
import yaml

from docs_blocks import (
    README,
    REPO,
    SCRIPTS,
    applied_files,
    created_secrets,
    fenced_blocks,
    helm_installs,
    routes,
    secret_references,
)


@pytest.fixture(params=sorted(SCRIPTS))
def script(request: pytest.FixtureRequest) -> str:
    return SCRIPTS[request.param]()


def test_the_path_installs_the_chart_of_this_checkout(script: str) -> None:
    (release,) = helm_installs(script)
    assert (REPO / release.chart / "Chart.yaml").exists()


def test_the_path_applies_an_example_route(script: str) -> None:
    files = applied_files(script)
    assert files and all(path.is_relative_to(REPO / "examples") for path in files)
    assert routes(files)


def test_every_secret_key_a_route_references_is_created(script: str) -> None:
    created = created_secrets(script)
    for route in routes(applied_files(script)):
        for name, key in secret_references(route):
            assert key in created.get(name, set()), (
                f"route {route['metadata']['name']} references Secret {name} key {key}, "
                f"which the commands do not create (they create {created})"
            )


def test_the_path_waits_for_each_route_to_be_ready(script: str) -> None:
    for route in routes(applied_files(script)):
        assert f"wait llmroute/{route['metadata']['name']} --for=condition=Ready" in script


def test_the_readmes_route_snippet_uses_the_secrets_the_readme_creates() -> None:
    created = created_secrets(SCRIPTS["README.md"]())
    snippets = [
        doc
        for block in fenced_blocks(README.read_text(), "yaml")
        for doc in yaml.safe_load_all(block)
        if doc and doc.get("kind") == "LLMRoute"
    ]
    assert snippets
    for snippet in snippets:
        for name, key in secret_references(snippet):
            assert key in created.get(name, set()), (name, key)


def test_the_examples_headers_create_the_secrets_their_routes_reference() -> None:
    """Each example says in its header comment how to create the Secrets it needs."""
    for path in sorted((REPO / "examples").glob("*.yaml")):
        header = "\n".join(
            line.removeprefix("#").removeprefix(" ")
            for line in path.read_text().splitlines()
            if line.startswith("#")
        )
        created = created_secrets(header)
        for route in routes([path]):
            for name, key in secret_references(route):
                assert key in created.get(name, set()), f"{path.name}: Secret {name} key {key}"
