"""The `llmroute` command: run the operator, work with LLMRoute files offline, and read the
state of the gateways in a cluster.

Offline: `render` (the objects the operator would apply, or a Compose file for a laptop) and
`validate` (schema and semantics, for CI). Against a cluster: `status` (routes and quotas)
and `usage` (spend and tokens by route, model, target, caller and task).

Each command lives in a module of its own; litellm, kopf and the kubernetes client are
imported only inside the commands that use them, so `--help`, `validate` and `render` start
quickly.
"""

from __future__ import annotations

from typing import Final

import click

from .offline import render, validate
from .run import run
from .status import status
from .usage import usage

CONTEXT_SETTINGS: Final = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="llmroute")
def main() -> None:
    """llmroute: a governed, OpenAI-compatible LLM gateway for Kubernetes.

    \b
    Offline, on manifest files:
      llmroute validate -f route.yaml           check LLMRoutes and ModelQuotas
      llmroute render -f route.yaml             the objects the operator would apply
      llmroute render -f route.yaml --format compose > compose.yaml
                                                the same gateway for docker compose
    Against a cluster (kubeconfig, or in-cluster):
      llmroute status -A                        routes and budgets, with their conditions
      llmroute usage -n prod                    spend and tokens by model, caller, task
    The operator itself:
      llmroute run                              what the Helm chart's Deployment runs
    """


for _command in (run, validate, render, status, usage):
    main.add_command(_command)

__all__ = ["main"]
