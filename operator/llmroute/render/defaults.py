"""Defaults of LLMRoute fields, defined once.

The CRD (crds/) declares the same values as OpenAPI defaults, so objects stored in the cluster
arrive with them filled in. Render applies them too, so that offline input without defaults
(`llmroute render -f route.yaml`) renders exactly like the stored object would;
tests/unit/test_render_defaults.py keeps both in step.
"""

from typing import Final

# spec.models[]
MODEL_STRATEGY: Final = "priority"
# spec.models[].targets[].weight (read only by strategy weighted)
TARGET_WEIGHT: Final = 1

# spec.router
ROUTER_NUM_RETRIES: Final = 2
ROUTER_TIMEOUT_SECONDS: Final = 60
ROUTER_FALLBACK_ON: Final = ("errors", "rateLimit", "timeout", "contextWindow")
ROUTER_ALLOWED_FAILS: Final = 3
ROUTER_COOLDOWN_SECONDS: Final = 30
ROUTER_CACHE_ENABLED: Final = False
ROUTER_CACHE_TTL_SECONDS: Final = 600
ROUTER_REDIS_PORT: Final = 6379

# spec.proxy
PROXY_REPLICAS: Final = 1
PROXY_AUTOSCALING_ENABLED: Final = False
PROXY_AUTOSCALING_MIN_REPLICAS: Final = 1
PROXY_AUTOSCALING_MAX_REPLICAS: Final = 5
PROXY_AUTOSCALING_TARGET_CPU_PERCENT: Final = 70
# One worker: ~21 ms of CPU a request, so ~45 requests/s on its CPU, and ~350 MiB RSS
# (docs/benchmarks.md); 1 CPU / 1 Gi fits it with headroom.
PROXY_RESOURCES: Final = {
    "requests": {"cpu": "500m", "memory": "512Mi"},
    "limits": {"cpu": "1", "memory": "1Gi"},
}
PROXY_WORKERS: Final = 0  # 0: derived from the container's CPU and memory limits
# For log volume, not speed: on one CPU, INFO and WARNING served 44 / 52 requests/s at
# concurrency 50 and 44 / 39 at 10, within the noise (docs/benchmarks.md).
PROXY_LOG_LEVEL: Final = "WARNING"

# spec.auth: the key inside the generated "<route>-master-key" Secret
MASTER_KEY_SECRET_KEY: Final = "masterKey"
