"""Where the proxies reach the route's shared Redis, managed or external.

With spec.redis the LiteLLM router of every proxy process keeps its rpm/tpm counters,
cooldowns and (spec.router.cache) cached answers in one Redis, so a limit holds for the
whole gateway instead of per process. This is the one place that says where that Redis is;
the LiteLLM config (llmroute.render.litellm_config) and the Compose file read it from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmroute.api.route import Route, SecretKeyRef
from llmroute.render.names import (
    REDIS_PASSWORD_SECRET_KEY,
    REDIS_PORT,
    managed_redis_host,
    redis_name,
)


@dataclass(frozen=True)
class RedisConnection:
    """Where the proxies reach the route's Redis."""

    host: str
    port: int
    password_ref: SecretKeyRef | None
    tls: bool


def redis_connection(route: Route) -> RedisConnection | None:
    """The Redis the proxies share, or None when the route has none."""
    if route.redis is None:
        return None
    external = route.redis.external
    if external is not None:
        return RedisConnection(external.host, external.port, external.password_ref, external.tls)
    return RedisConnection(
        host=managed_redis_host(route.name, route.namespace),
        port=REDIS_PORT,
        password_ref=SecretKeyRef(redis_name(route.name), REDIS_PASSWORD_SECRET_KEY),
        tls=False,
    )
