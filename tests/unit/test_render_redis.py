"""The route's shared Redis: spec.redis parsed, the managed Redis's objects, the LiteLLM
wiring, and the runner's plan for a Redis pod (a real redis-server launch included).

The golden cases managed-redis and replicas-redis hold the whole objects; these tests say
which properties of them matter and why.
"""

from __future__ import annotations

import base64
import copy
import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from llmroute import versions
from llmroute.api.route import SpecError
from llmroute.api.validation import validate
from llmroute.render.names import REDIS_PASSWORD_SECRET_KEY
from llmroute.render.redis import PASSWORD_ENV
from localcluster.runner import (
    RedisLaunch,
    UnsupportedPod,
    cluster_hosts,
    plan_redis_launch,
    pod_component,
)
from localcluster.wait import wait_for
from manifests import render_manifest

PROXY_SELECTOR = {
    "app.kubernetes.io/name": "litellm",
    "app.kubernetes.io/instance": "gw",
    "app.kubernetes.io/component": "proxy",
}


def route(redis_spec: Any, cache: bool = False, **router: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "models": [
            {"name": "m", "targets": [{"provider": "openai", "model": "gpt-4o", "rpm": 12}]}
        ],
        "router": {**router, "cache": {"enabled": cache}},
        "proxy": {"replicas": 3, "workers": 2},
    }
    if redis_spec is not None:
        spec["redis"] = redis_spec
    return {
        "apiVersion": "llmroute.dev/v1alpha1",
        "kind": "LLMRoute",
        "metadata": {"name": "gw", "namespace": "ns"},
        "spec": spec,
    }


def objects(manifest: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in render_manifest(manifest).objects}


def proxy_secret_env(manifest: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The proxy's Secret-fed variables: name -> {name, key} of the Secret."""
    deployment = objects(manifest)[("Deployment", "gw-litellm")]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {
        e["name"]: {k: e["valueFrom"]["secretKeyRef"][k] for k in ("name", "key")}
        for e in container["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }


# -- the API ---------------------------------------------------------------------------------


def test_the_old_router_redis_field_is_refused_with_where_it_went() -> None:
    manifest = route(None, redis={"host": "redis"})
    with pytest.raises(SpecError, match=r"spec\.router\.redis moved to spec\.redis"):
        render_manifest(manifest)
    (error,) = [e for e in validate(manifest) if e.path == "spec.router.redis"]
    assert "spec.redis.external" in error.message


@pytest.mark.parametrize(
    "redis",
    [{}, {"managed": {}, "external": {"url": "redis://r"}}],
    ids=["neither", "both"],
)
def test_spec_redis_is_either_managed_or_external(redis: dict[str, Any]) -> None:
    with pytest.raises(SpecError, match="exactly one of managed and external"):
        render_manifest(route(redis))
    assert [e.path for e in validate(route(redis)) if e.path.startswith("spec.redis")] == [
        "spec.redis"
    ]


@pytest.mark.parametrize(
    "url",
    ["redis://user:pw@r:6379", "http://r:6379", "redis://r:99999", "redis://"],
)
def test_an_external_url_is_a_bare_redis_address(url: str) -> None:
    with pytest.raises(SpecError, match=r"spec\.redis\.external\.url"):
        render_manifest(route({"external": {"url": url}}))


# -- external ----------------------------------------------------------------------------


def test_an_external_redis_is_wired_by_host_port_and_a_secret_fed_password() -> None:
    manifest = route(
        {
            "external": {
                "url": "redis://cache.infra.svc:6380",
                "passwordSecretRef": {"name": "redis-auth", "key": "pw"},
                "tls": True,
            }
        },
        cache=True,
    )
    rendered = render_manifest(manifest)
    settings = rendered.config["router_settings"]
    assert (settings["redis_host"], settings["redis_port"]) == ("cache.infra.svc", 6380)
    variable = settings["redis_password"].removeprefix("os.environ/")
    assert proxy_secret_env(manifest)[variable] == {
        "name": "redis-auth",
        "key": "pw",
    }
    assert settings["cache_kwargs"] == {"namespace": "llmroute:ns:gw", "ssl": True}
    cache = rendered.config["litellm_settings"]["cache_params"]
    assert cache["type"] == "redis" and cache["ssl"] is True
    assert cache["password"] == settings["redis_password"]
    assert ("spec.redis.external.passwordSecretRef") in [r.field for r in rendered.secret_refs]
    # The operator runs nothing for an external Redis.
    assert not [o for o in rendered.objects if "redis" in o["metadata"]["name"]]
    assert rendered.generated_redis_secret is None


# -- managed ---------------------------------------------------------------------------------


def test_a_managed_redis_gets_a_generated_password_secret_without_its_value() -> None:
    rendered = render_manifest(route({"managed": {}}))
    secret = rendered.generated_redis_secret
    assert secret is not None and secret["metadata"]["name"] == "gw-redis"
    assert "data" not in secret and "stringData" not in secret
    # The generated Secret is not a reference the user must provide.
    assert "gw-redis" not in [r.name for r in rendered.secret_refs]


def test_the_proxies_and_redis_read_the_password_from_the_generated_secret_only() -> None:
    manifest = route({"managed": {}}, cache=True)
    rendered = render_manifest(manifest)
    settings = rendered.config["router_settings"]
    assert (settings["redis_host"], settings["redis_port"]) == ("gw-redis.ns.svc", 6379)
    variable = settings["redis_password"].removeprefix("os.environ/")
    generated = {"name": "gw-redis", "key": REDIS_PASSWORD_SECRET_KEY}
    assert proxy_secret_env(manifest)[variable] == generated
    statefulset = objects(manifest)[("StatefulSet", "gw-redis")]
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    (env,) = container["env"]
    assert env["name"] == PASSWORD_ENV
    assert env["valueFrom"]["secretKeyRef"] == generated
    # requirepass comes from that variable, on the server's standard input: never an argument.
    assert f"requirepass ${PASSWORD_ENV}" in container["command"][2]
    assert not any("requirepass" in a for a in container["args"])
    cache = rendered.config["litellm_settings"]["cache_params"]
    assert cache == {
        "type": "redis",
        "host": "gw-redis.ns.svc",
        "port": 6379,
        "ttl": 600,
        "namespace": "llmroute:ns:gw",
        "password": settings["redis_password"],
    }


def test_only_the_routes_proxies_may_reach_the_managed_redis() -> None:
    policy = objects(route({"managed": {}}))[("NetworkPolicy", "gw-redis")]
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "redis"
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["ingress"] == [
        {
            "from": [{"podSelector": {"matchLabels": PROXY_SELECTOR}}],
            "ports": [{"protocol": "TCP", "port": 6379}],
        }
    ]


def test_the_managed_redis_is_one_pinned_unprivileged_server_without_persistence() -> None:
    rendered = objects(route({"managed": {}}))
    service = rendered[("Service", "gw-redis")]
    assert service["spec"]["clusterIP"] == "None"  # the name resolves to the pod
    statefulset = rendered[("StatefulSet", "gw-redis")]
    assert statefulset["spec"]["replicas"] == 1
    assert statefulset["spec"]["serviceName"] == "gw-redis"
    pod = statefulset["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == versions.REDIS_IMAGE
    assert f"docker.io/library/redis:{versions.REDIS_VERSION}" == versions.REDIS_IMAGE
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "64Mi"},
        "limits": {"cpu": "1", "memory": "256Mi"},
    }
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    assert "volumeClaimTemplates" not in statefulset["spec"]
    assert pod["volumes"] == [{"name": "data", "emptyDir": {"sizeLimit": "1Gi"}}]
    args = container["args"]
    assert args[args.index("--appendonly") + 1] == "no"
    assert args[args.index("--save") + 1] == ""


def test_persistence_keeps_an_append_only_file_on_a_claimed_volume() -> None:
    managed = {
        "resources": {"limits": {"memory": "1Gi"}},
        "persistence": {"enabled": True, "size": "5Gi", "storageClassName": "fast"},
    }
    statefulset = objects(route({"managed": managed}))[("StatefulSet", "gw-redis")]
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"] == {"requests": {"storage": "5Gi"}}
    assert claim["spec"]["storageClassName"] == "fast"
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    assert container["resources"] == {"limits": {"memory": "1Gi"}}
    assert container["args"][container["args"].index("--appendonly") + 1] == "yes"
    assert "volumes" not in statefulset["spec"]["template"]["spec"]


def test_limits_are_not_divided_with_a_managed_redis() -> None:
    with_redis = render_manifest(route({"managed": {}}))
    without = render_manifest(route(None))
    assert with_redis.config["model_list"][0]["litellm_params"]["rpm"] == 12
    assert without.config["model_list"][0]["litellm_params"]["rpm"] == 2  # 12 over 6
    assert with_redis.limit_division is not None and with_redis.limit_division.exact
    assert without.limit_division is not None and not without.limit_division.exact


def test_a_route_name_ending_in_redis_is_refused() -> None:
    manifest = route(None)
    manifest["metadata"]["name"] = "gw-redis"
    assert [e for e in validate(manifest) if e.path == "metadata.name"]


# -- the local cluster's runner ----------------------------------------------------------


def rendered_redis_pod(host: str = "198.18.16.30") -> dict[str, Any]:
    """The pod the StatefulSet controller makes from the rendered Redis template."""
    statefulset = objects(route({"managed": {}}))[("StatefulSet", "gw-redis")]
    pod = copy.deepcopy(statefulset["spec"]["template"])
    pod["metadata"].update(name="gw-redis-0", namespace="ns", uid="u")
    pod["spec"].update(hostname="gw-redis-0", subdomain="gw-redis")
    pod["status"] = {"phase": "Running", "podIP": host}
    return pod


def password_secret(password: str) -> dict[str, Any]:
    encoded = base64.b64encode(password.encode()).decode()
    return {"metadata": {"name": "gw-redis"}, "data": {REDIS_PASSWORD_SECRET_KEY: encoded}}


def test_plan_redis_launch_runs_the_pods_command_bound_to_the_pod_address() -> None:
    pod = rendered_redis_pod()
    assert pod_component(pod) == "redis"
    pod_dir = Path("/w/pods/ns_gw-redis-0_u")
    launch = plan_redis_launch(
        pod,
        pod_dir=pod_dir,
        volumes_dir=Path("/w/volumes"),
        secrets={"gw-redis": password_secret("s3cret")},
    )
    (container,) = pod["spec"]["containers"]
    args = [str(pod_dir / "data") if a == "/data" else a for a in container["args"]]
    assert launch.argv == (
        "/bin/sh",
        *container["command"][1:],
        *args,
        "--bind",
        pod["status"]["podIP"],
    )
    assert launch.env[PASSWORD_ENV] == "s3cret"
    assert (launch.host, launch.port) == ("198.18.16.30", 6379)
    assert pod_dir / "data" in launch.dirs
    container["command"] = ["python3", "-m", "http.server"]
    with pytest.raises(UnsupportedPod):
        plan_redis_launch(
            pod,
            pod_dir=pod_dir,
            volumes_dir=Path("/w/volumes"),
            secrets={"gw-redis": password_secret("s3cret")},
        )


def test_cluster_hosts_resolve_headless_services_to_ready_pods() -> None:
    node = "127.0.0.1 localhost\n127.0.1.1 node-7\n"
    text = cluster_hosts([(rendered_redis_pod("198.18.16.30"), "198.18.16.30")], base=node)
    lines = text.splitlines()
    # The node's own names first: a pod shares the node's host name.
    assert lines[:2] == ["127.0.0.1 localhost", "127.0.1.1 node-7"]
    (entry,) = [line for line in lines if line.startswith("198.18.16.30")]
    names = entry.split("\t")[1].split()
    assert "gw-redis.ns.svc" in names and "gw-redis.ns.svc.cluster.local" in names
    assert "gw-redis-0.gw-redis.ns.svc" in names
    # A pod without a subdomain (a Deployment's) has no DNS name of its own.
    plain = rendered_redis_pod("198.18.16.31")
    del plain["spec"]["subdomain"]
    assert "198.18.16.31" not in cluster_hosts([(plain, "198.18.16.31")])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_cli(launch: RedisLaunch, *args: str, password: str | None = None) -> str:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if password is not None:
        env["REDISCLI_AUTH"] = password
    result = subprocess.run(
        ["redis-cli", "-h", launch.host, "-p", str(launch.port), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=10,
    )
    return (result.stdout + result.stderr).strip()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server installed")
def test_the_planned_launch_serves_redis_with_the_pods_password(tmp_path: Path) -> None:
    pod = rendered_redis_pod("127.0.0.1")
    (container,) = pod["spec"]["containers"]
    container["args"][container["args"].index("--port") + 1] = str(free_port())
    container["ports"][0]["containerPort"] = int(container["args"][1])
    launch = plan_redis_launch(
        pod,
        pod_dir=tmp_path,
        volumes_dir=tmp_path / "volumes",
        secrets={"gw-redis": password_secret("pw-1")},
    )
    for directory in launch.dirs:
        directory.mkdir(parents=True, exist_ok=True)
    log = (tmp_path / "redis.log").open("w")
    process = subprocess.Popen(launch.argv, env=launch.env, stdout=log, stderr=log)
    try:
        wait_for(lambda: redis_cli(launch, "ping", password="pw-1") == "PONG", timeout=30)
        assert "NOAUTH" in redis_cli(launch, "ping")
        assert "WRONGPASS" in redis_cli(launch, "ping", password="wrong")
        # The password is on no argument list.
        assert "pw-1" not in " ".join(launch.argv)
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server installed")
def test_the_local_cluster_runs_the_pinned_redis_release() -> None:
    version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert f"v={versions.REDIS_VERSION} " in version
