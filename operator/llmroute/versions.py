"""Versions of the workloads the operator deploys, pinned once.

LITELLM_VERSION must equal the litellm pin in pyproject.toml (the extra `operator`): the
operator validates rendered configs with the same litellm release the proxy image runs.
OLLAMA_VERSION must equal OLLAMA_VERSION in hack/versions.env: the tests run the Ollama
server built from it. tests/unit/test_versions.py checks both.
"""

LITELLM_VERSION = "1.106.2"
LITELLM_IMAGE = f"ghcr.io/berriai/litellm:v{LITELLM_VERSION}"

OLLAMA_VERSION = "0.17.4"
OLLAMA_IMAGE = f"docker.io/ollama/ollama:{OLLAMA_VERSION}"
