"""Code that runs inside other pods, not in the operator.

The renderer ships these files as text; they never import llmroute, because llmroute is not
installed where they run:
- gateway_auth.py: the LiteLLM proxy's auth hook (general_settings.custom_auth), put in the
  route's ConfigMap as llmroute_auth.py next to config.yaml. Standard library and litellm only.
- stream_usage.py: a LiteLLM callback that asks every streamed chat completion's provider
  for its usage, so streams are counted on every target; in the ConfigMap as
  llmroute_stream_usage.py. Standard library and litellm only.
- quota_routing.py: a LiteLLM callback that applies the route's quota states to each
  request's deployments (removes exhausted targets, puts soft-limited ones behind the others),
  from a file the operator keeps up to date; in the ConfigMap as llmroute_quota_routing.py.
  Standard library and litellm only.
- file_reread.py: files the hooks above read per request, looked at no more than once a
  second; in the ConfigMap as llmroute_file_reread.py, which they import. Standard library only.
- proxy_workers.py: the proxy container's command, LiteLLM's CLI with a supervisor that
  accepts and hands each connection to the worker holding the fewest; in the ConfigMap as
  llmroute_proxy_workers.py. Standard library, uvicorn and litellm only.
- ollama_pull.sh: the managed Ollama container's command (POSIX sh), passed to `sh -c`: it
  serves Ollama and pulls the declared models before the pod turns Ready.

Each repeats a few names the renderer also uses (file names, directories, environment
variables); tests/unit/test_payloads.py checks that the two agree.
"""

from __future__ import annotations

import functools
import importlib.resources
from typing import Final

FILE_REREAD: Final = "file_reread.py"
GATEWAY_AUTH: Final = "gateway_auth.py"
OLLAMA_PULL: Final = "ollama_pull.sh"
PROXY_WORKERS: Final = "proxy_workers.py"
QUOTA_ROUTING: Final = "quota_routing.py"
STREAM_USAGE: Final = "stream_usage.py"


@functools.cache
def payload_text(name: str) -> str:
    """The text of one payload file of this folder, as shipped to its pod."""
    return importlib.resources.files(__package__).joinpath(name).read_text("utf-8")
