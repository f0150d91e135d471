"""How provider credentials reach LiteLLM: Secret keys -> env vars -> `os.environ/NAME`.

No secret value passes through render. Each (Secret, key) pair becomes one environment
variable of the proxy container, fed by a secretKeyRef, and the LiteLLM config names that
variable. Two targets that share a key share the variable.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Final

# The variable a Compose file reads the route's master key from (in a cluster the key reaches
# the proxy only as a mounted file, so emptying the Secret revokes it at once).
MASTER_KEY_ENV: Final = "LLMROUTE_MASTER_KEY"
# LiteLLM's own master key (general_settings.master_key): not the route's, but a random value
# each worker sets for itself at start (payloads/gateway_auth.py, seal_litellm_master_key).
LITELLM_MASTER_KEY_ENV: Final = "LLMROUTE_LITELLM_MASTER_KEY"


def secret_env_var(secret: str, key: str) -> str:
    """The env var that carries key `key` of Secret `secret`.

    Deterministic, so the rendered config does not change between reconciles; the readable
    part helps someone reading the pod spec, the hash keeps distinct pairs apart even when
    their readable parts sanitize to the same text ("a-b"/"c" and "a"/"b-c").
    """
    # "/" cannot occur in a Secret name, so "<secret>/<key>" is unambiguous.
    digest = hashlib.sha256(f"{secret}/{key}".encode()).hexdigest()[:8]
    readable = re.sub(r"[^A-Z0-9]+", "_", f"{secret}_{key}".upper()).strip("_")[:48]
    return f"LLMROUTE_SECRET_{readable}_{digest}"


def env_ref(var: str) -> str:
    return f"os.environ/{var}"


@dataclass(frozen=True)
class SecretEnv:
    """An environment variable of the proxy container fed by one key of one Secret."""

    var: str
    secret: str
    key: str
    optional: bool

    def manifest(self) -> dict[str, object]:
        return {
            "name": self.var,
            "valueFrom": {
                "secretKeyRef": {"name": self.secret, "key": self.key, "optional": self.optional}
            },
        }


class SecretEnvs:
    """Collects the Secret-fed env vars a config refers to, one per (Secret, key)."""

    def __init__(self) -> None:
        self._by_ref: dict[tuple[str, str], SecretEnv] = {}

    def ref(self, secret: str, key: str, *, optional: bool = False) -> str:
        """`os.environ/NAME` for the key; registers the env var it needs."""
        current = self._by_ref.get((secret, key))
        # A key any user needs is required for all of them.
        merged = optional and (current is None or current.optional)
        self._by_ref[(secret, key)] = SecretEnv(secret_env_var(secret, key), secret, key, merged)
        return env_ref(secret_env_var(secret, key))

    def envs(self) -> list[SecretEnv]:
        return sorted(self._by_ref.values(), key=lambda e: e.var)
