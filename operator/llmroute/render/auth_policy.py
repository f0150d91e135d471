"""What the proxy's auth hook (payloads/gateway_auth.py) reads: its policy file and the key files.

Keys are mounted as Secret volumes, one directory per key, holding just that key, so a key
rotated in its Secret reaches the pod without a restart and without a config change:
  <keys dir>/master/<key>           the route's master key
  <keys dir>/callers/<caller>/<key> each declared caller's key
The policy (llmroute_auth.json, next to config.yaml) names those files and carries what the
hook enforces besides the key: each caller's allowed models and tags, the models that
quotas reject, and (rendered by render/caller_budgets.py, kept out of the config hash so that
it changes without a restart) the exhausted budgets of callers and tasks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from llmroute.api.route import Route, SecretKeyRef
from llmroute.render.names import dns_label
from llmroute.render.quota_effects import RoutingPlan

KEYS_DIR: Final = "/etc/llmroute/keys"
POLICY_FILE: Final = "llmroute_auth.json"
# Keys of the policy that follow the quotas' states, not the spec: the hook re-reads them
# live, and they stay out of the config hash (a quota changing state restarts no proxy).
LIVE_POLICY_KEYS: Final = frozenset({"rejectedModels", "exhaustedBudgets"})


@dataclass(frozen=True)
class KeyMount:
    """One key of one Secret, mounted as <KEYS_DIR>/<directory>/<key>."""

    volume: str
    directory: str
    ref: SecretKeyRef

    @property
    def file(self) -> str:
        """The key file's path relative to the keys directory."""
        return f"{self.directory}/{self.ref.key}"


def key_mounts(route: Route, master: SecretKeyRef) -> list[KeyMount]:
    mounts = [KeyMount("master-key", "master", master)]
    mounts += [
        KeyMount(dns_label("caller", c.name), f"callers/{c.name}", c.key_ref) for c in route.callers
    ]
    return mounts


def render_auth_policy(route: Route, plan: RoutingPlan, mounts: list[KeyMount]) -> dict[str, Any]:
    by_directory = {m.directory: m for m in mounts}
    return {
        # The only names a request may give a model: LiteLLM would also serve a target named
        # by its deployment id or provider model, past the quota filter and the budgets.
        "models": [m.name for m in route.models],
        "masterKeyFile": by_directory["master"].file,
        "callers": [
            {
                "name": caller.name,
                "keyFile": by_directory[f"callers/{caller.name}"].file,
                # null: any model (or tag) of the route
                "models": list(caller.models) if caller.models is not None else None,
                "tags": list(caller.tags) if caller.tags is not None else None,
            }
            for caller in route.callers
        ],
        "rejectedModels": dict(plan.rejected),
    }


def spec_auth_policy(policy: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a rendered policy that the spec decides (what the config hash covers)."""
    return {k: v for k, v in policy.items() if k not in LIVE_POLICY_KEYS}
