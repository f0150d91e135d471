"""Versions of the workloads the operator deploys, pinned once.

LITELLM_VERSION must equal the litellm pin in pyproject.toml (the extra `operator`): the
operator validates rendered configs with the same litellm release the proxy image runs.
REDIS_VERSION is the release of Debian's redis-server package (bookworm) that the local
cluster runs for the managed Redis pods, so tests and clusters run the same server.
OLLAMA_VERSION must equal OLLAMA_VERSION in hack/versions.env: the tests run the Ollama
server built from it. tests/unit/test_versions.py checks both.
"""

LITELLM_VERSION = "1.106.2"
LITELLM_IMAGE = f"ghcr.io/berriai/litellm:v{LITELLM_VERSION}"

OLLAMA_VERSION = "0.17.4"
OLLAMA_IMAGE = f"docker.io/ollama/ollama:{OLLAMA_VERSION}"

REDIS_VERSION = "7.0.15"
REDIS_IMAGE = f"docker.io/library/redis:{REDIS_VERSION}"
