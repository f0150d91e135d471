"""The cluster admin's allow-list of apiBase hosts, which the operator enforces on every route.

Whoever may edit an LLMRoute may point a target's apiBase anywhere and give it any Secret of
the namespace through apiKeySecretRef: the proxy then sends that Secret's value to that URL.
The API cannot tell a legitimate endpoint from an exfiltration one, so the chart lets the
cluster admin list the hosts apiBase may name (value `apiBase.allowedHosts`, and per
namespace `apiBase.allowedHostsByNamespace`), handed to the operator as JSON in one
environment variable. A route naming another host is refused before anything is applied.
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from llmroute.api.route import Route
from llmroute.api.validation import ValidationError

API_BASE_POLICY_ENV: Final = "LLMROUTE_API_BASE_POLICY"
_KEYS: Final = frozenset({"allowedHosts", "allowedHostsByNamespace"})


@dataclass(frozen=True)
class ApiBaseError(ValidationError):
    """An apiBase whose host the policy does not allow."""

    host: str = ""


@dataclass(frozen=True)
class ApiBasePolicy:
    """Host patterns (shell-style, matched against the URL's host name) apiBase may name.

    allowed_hosts: for every namespace without its own list; empty: any host.
    by_namespace: namespace -> its list, replacing allowed_hosts there (empty: any host).
    """

    allowed_hosts: tuple[str, ...] = ()
    by_namespace: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_env(cls, value: str | None) -> ApiBasePolicy:
        """The policy from the JSON the chart puts in LLMROUTE_API_BASE_POLICY (unset: none)."""
        if not value:
            return cls()
        try:
            raw = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"{API_BASE_POLICY_ENV} is not JSON: {error}") from None
        if not isinstance(raw, dict) or not set(raw) <= _KEYS:
            raise ValueError(
                f"{API_BASE_POLICY_ENV} must be an object with keys {', '.join(sorted(_KEYS))}"
            )
        by_namespace = raw.get("allowedHostsByNamespace") or {}
        if not isinstance(by_namespace, dict):
            raise ValueError(f"{API_BASE_POLICY_ENV}: allowedHostsByNamespace must be an object")
        return cls(
            allowed_hosts=_patterns(raw.get("allowedHosts"), "allowedHosts"),
            by_namespace={
                str(ns): _patterns(hosts, f"allowedHostsByNamespace.{ns}")
                for ns, hosts in by_namespace.items()
            },
        )

    @classmethod
    def from_environment(cls) -> ApiBasePolicy:
        return cls.from_env(os.environ.get(API_BASE_POLICY_ENV))

    def hosts_for(self, namespace: str) -> tuple[str, ...]:
        """The patterns that apply in `namespace`; empty: any host."""
        return self.by_namespace.get(namespace, self.allowed_hosts)


def _patterns(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
        raise ValueError(f"{API_BASE_POLICY_ENV}: {where} must be a list of host patterns")
    return tuple(p.lower() for p in value)


def host_allowed(host: str, patterns: tuple[str, ...]) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(host, p) for p in patterns)


def api_base_errors(route: Route, policy: ApiBasePolicy) -> list[ApiBaseError]:
    """Each target apiBase of `route` whose host the policy does not allow, with its field."""
    patterns = policy.hosts_for(route.namespace)
    if not patterns:
        return []
    errors = []
    for model in route.models:
        for target in model.targets:
            if target.api_base is None:
                continue
            host = (urlsplit(target.api_base).hostname or "").lower()
            if not host_allowed(host, patterns):
                errors.append(
                    ApiBaseError(
                        f"{target.path}.apiBase",
                        f"host {host!r} is not among the hosts the cluster allows for apiBase "
                        f"({', '.join(patterns)})",
                        host=host,
                    )
                )
    return errors
