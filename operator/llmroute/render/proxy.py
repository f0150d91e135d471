"""Kubernetes objects of a route's LiteLLM proxy: ConfigMap, Service, Deployment and friends.

Plain dicts, without ownerReferences (the handler adds them).
"""

from __future__ import annotations

from typing import Any, Final

from llmroute import versions
from llmroute.api.route import Route, SecretKeyRef
from llmroute.render.auth_policy import KEYS_DIR, POLICY_FILE, KeyMount
from llmroute.render.credentials import SecretEnv
from llmroute.render.expose import exposure_ingress_rules
from llmroute.render.labels import (
    CONFIG_HASH_ANNOTATION,
    REPLICAS_ANNOTATION,
    operator_ingress,
    proxy_labels,
    proxy_selector,
)
from llmroute.render.litellm_config import STARTUP_HOOK
from llmroute.render.names import (
    MASTER_KEY_SECRET_KEY,
    PROXY_PORT,
    master_key_secret_name,
    proxy_name,
    service_name,
)
from llmroute.render.quota_routing import QUOTA_ROUTING_FILE
from llmroute.render.sizing import proxy_workers

PROXY_CONTAINER: Final = "litellm"
CONFIG_DIR: Final = "/etc/litellm"
CONFIG_FILE: Final = "config.yaml"
AUTH_MODULE_FILE: Final = "llmroute_auth.py"
STREAM_USAGE_MODULE_FILE: Final = "llmroute_stream_usage.py"
QUOTA_ROUTING_MODULE_FILE: Final = "llmroute_quota_routing.py"
# payloads/file_reread.py, which the hooks above import (CONFIG_DIR is on PYTHONPATH).
FILE_REREAD_MODULE_FILE: Final = "llmroute_file_reread.py"
# payloads/proxy_workers.py, the container's command: LiteLLM's CLI with a listening socket
# per worker. Run as a module (`python3 -m`), found on PYTHONPATH (CONFIG_DIR).
WORKERS_MODULE: Final = "llmroute_proxy_workers"
WORKERS_MODULE_FILE: Final = f"{WORKERS_MODULE}.py"
# An unprivileged, numeric user: runAsNonRoot can verify it without reading the image.
RUN_AS_USER: Final = 65532
# Workers are recycled after this many requests (jittered, so they do not all restart at once),
# bounding LiteLLM's memory growth.
MAX_REQUESTS_BEFORE_RESTART: Final = 10000
MAX_REQUESTS_BEFORE_RESTART_JITTER: Final = 1000
# Time for endpoints to drop a terminating pod before it stops accepting requests.
PRE_STOP_SLEEP_SECONDS: Final = 5
# Time for the proxy to exit once its last request is answered.
SHUTDOWN_SECONDS: Final = 5
# The most a terminating proxy pod is given. The proxy exits as soon as its requests are
# answered, so a long grace period costs nothing in the usual case; it bounds how long a node
# drain waits for a pod whose requests all run into every timeout of a long chain. One hour
# is the longest timeout a single target may have (spec...timeoutSeconds maximum).
MAX_TERMINATION_GRACE_SECONDS: Final = 3600


def render_config_map(
    route: Route,
    config_yaml: str,
    auth_module: str,
    auth_policy_json: str,
    stream_usage_module: str,
    quota_routing_module: str,
    quota_routing_json: str,
    *,
    file_reread_module: str,
    workers_module: str,
) -> dict[str, Any]:
    """The proxy's files. The proxies read config.yaml and the modules at start-up; the auth
    policy and the quota routing file they re-read while they run (the ConfigMap is mounted
    as a directory, so the kubelet updates them in place)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": proxy_name(route.name),
            "namespace": route.namespace,
            "labels": proxy_labels(route.name),
        },
        "data": {
            CONFIG_FILE: config_yaml,
            AUTH_MODULE_FILE: auth_module,
            POLICY_FILE: auth_policy_json,
            STREAM_USAGE_MODULE_FILE: stream_usage_module,
            QUOTA_ROUTING_MODULE_FILE: quota_routing_module,
            QUOTA_ROUTING_FILE: quota_routing_json,
            FILE_REREAD_MODULE_FILE: file_reread_module,
            WORKERS_MODULE_FILE: workers_module,
        },
    }


def render_master_key_secret(route: Route, name: str) -> dict[str, Any]:
    """The generated master-key Secret, without any key: render stays deterministic and never
    holds a usable key. The operator creates it with a random key, or fills it with one when it
    exists without a usable key (e.g. applied from `llmroute render`)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": route.namespace,
            "labels": proxy_labels(route.name),
        },
        "type": "Opaque",
    }


def render_service(route: Route) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(route.name),
            "namespace": route.namespace,
            "labels": proxy_labels(route.name),
        },
        "spec": {
            "type": "ClusterIP",
            "selector": proxy_selector(route.name),
            "ports": [
                {"name": "http", "port": PROXY_PORT, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }


def render_network_policy(route: Route, operator_namespace: str | None) -> dict[str, Any]:
    # Default: only pods of the route's own namespace may call the gateway.
    peers: list[dict[str, Any]] = [dict(p) for p in route.access_from] or [{"podSelector": {}}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": proxy_name(route.name),
            "namespace": route.namespace,
            "labels": proxy_labels(route.name),
        },
        "spec": {
            "podSelector": {"matchLabels": proxy_selector(route.name)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": peers,
                    "ports": [{"protocol": "TCP", "port": PROXY_PORT}],
                },
                # Outside clients, through the Gateway or ingress controller (spec.expose).
                *exposure_ingress_rules(route),
                # The operator scrapes every replica's /metrics for quota accounting.
                *operator_ingress(operator_namespace, PROXY_PORT),
            ],
        },
    }


def _proxy_args(workers: int) -> list[str]:
    args = ["--config", f"{CONFIG_DIR}/{CONFIG_FILE}", "--port", str(PROXY_PORT)]
    args += ["--num_workers", str(workers)]
    if workers > 1:
        # With one worker there is no supervisor: the recycled worker would be the whole
        # server, and the container would exit. With several, the launcher's supervisor
        # replaces it. (No --timeout_worker_healthcheck: that supervisor pings no worker, so
        # a worker busy importing litellm on a loaded node is not killed for being slow.)
        args += [
            "--max_requests_before_restart",
            str(MAX_REQUESTS_BEFORE_RESTART),
            "--max_requests_before_restart_jitter",
            str(MAX_REQUESTS_BEFORE_RESTART_JITTER),
        ]
    return args


def _env(route: Route, secret_envs: list[SecretEnv]) -> list[dict[str, Any]]:
    # No master key here: the hook reads it from its mounted file only, so emptying the Secret
    # revokes it at once (a variable would keep the value the pod started with).
    env: list[dict[str, Any]] = [
        *(e.manifest() for e in secret_envs),
        # Each worker gives LiteLLM's own master key a random value before reading the config.
        {"name": "LITELLM_WORKER_STARTUP_HOOKS", "value": STARTUP_HOOK},
        {"name": "PYTHONPATH", "value": CONFIG_DIR},
        # `python3 -m` would put the working directory first on sys.path (the image's
        # WORKDIR may hold LiteLLM's source tree); the `litellm` script never did.
        {"name": "PYTHONSAFEPATH", "value": "1"},
        # Use the price map shipped with the pinned release; never fetch one at start-up.
        {"name": "LITELLM_LOCAL_MODEL_COST_MAP", "value": "True"},
        {"name": "LITELLM_LOG", "value": route.proxy.log_level},
        # The admin UI needs LiteLLM's database, which a route does not have.
        {"name": "DISABLE_ADMIN_UI", "value": "True"},
        # The root filesystem is read-only; whatever wants a home directory gets /tmp.
        {"name": "HOME", "value": "/tmp"},
    ]
    for variable in route.proxy.env:
        if variable.secret_ref is None:
            env.append({"name": variable.name, "value": variable.value or ""})
        else:
            ref = variable.secret_ref
            env.append(
                {
                    "name": variable.name,
                    "valueFrom": {
                        "secretKeyRef": {"name": ref.name, "key": ref.key, "optional": False}
                    },
                }
            )
    return env


def _volumes(
    route: Route, key_mounts: list[KeyMount]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": proxy_name(route.name)}},
        # Prometheus multi-process files, temp files of uploads, HOME.
        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    for key in key_mounts:
        volumes.append(
            {
                "name": key.volume,
                "secret": {
                    "secretName": key.ref.name,
                    # Only the one key: the pod gets nothing else from a shared Secret.
                    "items": [{"key": key.ref.key, "path": key.ref.key}],
                    "defaultMode": 0o440,
                    # A key removed from its Secret (or the Secret deleted) leaves no file, which
                    # revokes it; required, kubelet would keep serving the last file it wrote.
                    "optional": True,
                },
            }
        )
        # Mounted as a directory (not subPath), so kubelet updates a rotated key in place.
        mounts.append(
            {"name": key.volume, "mountPath": f"{KEYS_DIR}/{key.directory}", "readOnly": True}
        )
    return volumes, mounts


def longest_request_seconds(route: Route) -> int:
    """The longest a request may take in the proxy when every attempt runs into its timeout.

    LiteLLM (1.106.2) tries a model's deployments 1 + numRetries times per priority level
    (each `order` is a level it falls back through), then each model of the fallback chain
    the same way, and the fallbacks' own fallbacks, each model once per request. An attempt
    lasts at most its target's timeoutSeconds (else spec.router.timeoutSeconds). Counted
    from the spec alone, so a quota changing state never changes it (nor rolls the pods): a
    model of strategy priority has one level per target, any other at most two (targets a
    quota soft-limits move behind the others).
    """
    attempts = 1 + route.router.num_retries

    def model_seconds(name: str) -> int:
        model = route.model(name)
        timeouts = [t.timeout_seconds or route.router.timeout_seconds for t in model.targets]
        if model.strategy == "priority":
            return attempts * sum(timeouts)  # one level per target
        return min(2, len(timeouts)) * attempts * max(timeouts)

    def reachable(name: str) -> list[str]:
        seen = [name]
        for current in seen:
            seen += [f for f in route.model(current).fallbacks if f not in seen]
        return seen

    return max(sum(model_seconds(n) for n in reachable(m.name)) for m in route.models)


def termination_grace_seconds(route: Route) -> int:
    """terminationGracePeriodSeconds of a proxy pod: the preStop sleep, the longest request
    (longest_request_seconds) and the proxy's exit, capped at MAX_TERMINATION_GRACE_SECONDS.

    A rollout or drain then never cuts a request that is still within its timeouts. A
    streamed answer can outlast it: a timeout bounds the wait for each chunk, not the stream.
    """
    wanted = PRE_STOP_SLEEP_SECONDS + longest_request_seconds(route) + SHUTDOWN_SECONDS
    return min(MAX_TERMINATION_GRACE_SECONDS, wanted)


def render_deployment(
    route: Route,
    *,
    config_hash: str,
    secret_envs: list[SecretEnv],
    key_mounts: list[KeyMount],
) -> dict[str, Any]:
    workers = proxy_workers(route)
    volumes, mounts = _volumes(route, key_mounts)
    probe = {"httpGet": {"path": "/health/liveliness", "port": "http"}, "timeoutSeconds": 5}
    container = {
        "name": PROXY_CONTAINER,
        "image": route.proxy.image or versions.LITELLM_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        # LiteLLM's CLI (through the shipped launcher, which spreads connections evenly over
        # the workers), not the image's entrypoint script, so the pod runs the same way
        # wherever the image comes from.
        "command": ["python3", "-m", WORKERS_MODULE],
        "args": _proxy_args(workers),
        "ports": [{"name": "http", "containerPort": PROXY_PORT, "protocol": "TCP"}],
        "env": _env(route, secret_envs),
        "resources": route.proxy.resources,
        # Start-up takes 6-9 s with one worker; allow for slow nodes and more workers.
        "startupProbe": {**probe, "periodSeconds": 2, "failureThreshold": 60},
        "livenessProbe": {**probe, "periodSeconds": 15, "failureThreshold": 4},
        "readinessProbe": {
            "httpGet": {"path": "/health/readiness", "port": "http"},
            "timeoutSeconds": 5,
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SLEEP_SECONDS}}},
        "volumeMounts": mounts,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    pod_spec: dict[str, Any] = {
        # Service links would put variables such as REDIS_PORT=tcp://... into the environment,
        # and LiteLLM reads REDIS_* and other variables as settings.
        "enableServiceLinks": False,
        # The proxy never talks to the Kubernetes API.
        "automountServiceAccountToken": False,
        # In-flight requests may run through all their retries and fallbacks after the
        # endpoints drop the pod.
        "terminationGracePeriodSeconds": termination_grace_seconds(route),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    if _may_run_several(route):
        pod_spec["topologySpreadConstraints"] = [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": proxy_selector(route.name)},
            }
        ]
    spec: dict[str, Any] = {
        "selector": {"matchLabels": proxy_selector(route.name)},
        # A new pod is Ready before an old one goes, so a config change drops no requests.
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
        },
        "template": {
            "metadata": {
                "labels": proxy_labels(route.name),
                "annotations": {CONFIG_HASH_ANNOTATION: config_hash},
            },
            "spec": pod_spec,
        },
    }
    metadata: dict[str, Any] = {
        "name": proxy_name(route.name),
        "namespace": route.namespace,
        "labels": proxy_labels(route.name),
    }
    if not route.proxy.autoscaling.enabled:
        # The route owns the replica count: a count set by anyone else (kubectl scale) is
        # drift, found by comparing it with the annotation. With autoscaling the HPA owns it;
        # writing one here would fight it (the handler hands the field over).
        spec = {"replicas": route.proxy.replicas, **spec}
        metadata["annotations"] = {REPLICAS_ANNOTATION: str(route.proxy.replicas)}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": spec}


def _may_run_several(route: Route) -> bool:
    scaling = route.proxy.autoscaling
    return scaling.max_replicas > 1 if scaling.enabled else route.proxy.replicas > 1


def render_pod_disruption_budget(route: Route) -> dict[str, Any] | None:
    scaling = route.proxy.autoscaling
    several = scaling.min_replicas > 1 if scaling.enabled else route.proxy.replicas > 1
    if not several:
        # A budget for a single replica would block node drains for good.
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": proxy_name(route.name),
            "namespace": route.namespace,
            "labels": proxy_labels(route.name),
        },
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": proxy_selector(route.name)},
        },
    }


def render_horizontal_pod_autoscaler(route: Route) -> dict[str, Any] | None:
    scaling = route.proxy.autoscaling
    if not scaling.enabled:
        return None
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": proxy_name(route.name),
            "namespace": route.namespace,
            "labels": proxy_labels(route.name),
        },
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": proxy_name(route.name),
            },
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": scaling.target_cpu_percent,
                        },
                    },
                }
            ],
        },
    }


def master_key_ref(route: Route, generated_name: str | None) -> SecretKeyRef:
    if route.master_key_ref is not None:
        return route.master_key_ref
    return SecretKeyRef(generated_name or master_key_secret_name(route.name), MASTER_KEY_SECRET_KEY)
