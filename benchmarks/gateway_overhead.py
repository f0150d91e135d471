"""The gateway's overhead: the same requests direct to an upstream and through the proxy.

Three paths to one fake OpenAI upstream that answers after a fixed delay (default 50 ms):

(a) direct      the load generator calls the upstream itself: the floor.
(b) llmroute    the litellm proxy exactly as llmroute renders it: render_route() of a route
                with one openai target at the upstream, in a 1-CPU pod; the Deployment's pod
                template, ConfigMap and Secrets go through the process runner's
                plan_proxy_launch(), so args, env and files are the pod's own.
(c) chart       the litellm proxy as LiteLLM's own Helm chart (deploy/charts/litellm-helm)
                runs it by default: args `--config /etc/litellm/config.yaml` (no
                --num_workers: litellm's default of one worker), LITELLM_LOG=INFO (the chart's
                logLevel), the master key from PROXY_MASTER_KEY, the provider key through
                envFrom, the config at /etc/litellm/config.yaml by subPath. Same model_list and
                router_settings as (b), plus the prometheus callback.
(d) bare        LiteLLM's floor: the same pinned release with a minimal config (the one model,
                a master key, no callbacks, no custom auth, LiteLLM's default logging) and
                (b)'s number of workers, so (b) / (d) is what llmroute's config adds.

With --alt-litellm PATH (the `litellm` of a second venv holding another release), (d) runs
once more on that release: "alt-bare", what the pin costs. (b) does not: llmroute's hooks are
written against the pin (the quota filter raises LiteLLM's PaymentRequiredError, which 1.93.0
does not have).

The variants "llmroute-rpm" and "llmroute-redis" give (b)'s target an rpm limit it never
reaches, counted in each LiteLLM process, or in a shared Redis (spec.redis.external, a real
redis-server started for the run): what counting a limit costs per request, and what sharing
the count in Redis adds.

(b) and (c) run pinned to the same core (--proxy-cpus), the upstream fake and the load
generator to another (--client-cpus), each in a process of its own. Every level runs (a),
(b), (c) back to back, so the three share the machine's load; load averages are recorded
before and after each measurement.

    .venv/bin/python -m benchmarks.gateway_overhead --concurrency 1,10,50 --duration 15
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from benchmarks import REPO_ROOT
from benchmarks.common import load_average, machine, now_iso, ratio, rss_kib, write_results
from benchmarks.profiling import Sampler, summarize
from llmroute.api.route import parse_route
from llmroute.render import render_route
from llmroute.render.names import MASTER_KEY_SECRET_KEY
from llmroute.render.proxy import PROXY_PORT
from localcluster import (
    ManagedProcess,
    ProxyLaunch,
    free_port,
    launch_proxy,
    plan_proxy_launch,
    wait_http_ok,
)

NAMESPACE = "bench"
ROUTE = "gw"
MODEL = "smart"
UPSTREAM_MODEL = "gpt-4o-mini"
PROVIDER_SECRET = "provider-keys"
PROVIDER_KEY = "sk-upstream-bench"
MASTER_KEY = "sk-bench-master-0123456789abcdef"
# Loopback addresses of their own (the local cluster's pods use 127.0.1.0/24), one per proxy.
PROXY_IPS = {
    "llmroute": "127.0.3.1",
    "chart": "127.0.3.2",
    "bare": "127.0.3.3",
    "alt-bare": "127.0.3.5",
}
CHART_CONFIG_MAP = "litellm-config"
CHART_MASTER_SECRET = "litellm-masterkey"
CHART_ENV_SECRET = "litellm-env"
BARE_CONFIG_MAP = "bare-litellm-config"
REDIS_ADDRESS = ("127.0.3.9", 6379)
REDIS_SECRET = "bench-redis"
REDIS_PASSWORD = "bench-redis-password-0123456789"
# Never reached: what is measured is the counting, not the refusals.
UNREACHED_RPM = 1_000_000


# -- the route and the two proxy pods ------------------------------------------------------------


def bench_route(
    upstream_base: str,
    *,
    cpu: str = "1",
    workers: int = 0,
    rpm: int | None = None,
    shared_redis: bool = False,
) -> dict[str, Any]:
    """One model, one openai target at the upstream, a proxy pod with `cpu` CPUs; optionally
    an rpm limit on the target, and the bench's Redis (REDIS_ADDRESS) to count it in."""
    proxy: dict[str, Any] = {"resources": {"limits": {"cpu": cpu, "memory": "4Gi"}}}
    if workers:
        proxy["workers"] = workers
    target: dict[str, Any] = {
        "provider": "openai",
        "model": UPSTREAM_MODEL,
        "apiBase": upstream_base,
        "apiKeySecretRef": {"name": PROVIDER_SECRET, "key": "openai"},
    }
    if rpm is not None:
        target["rpm"] = rpm
    spec: dict[str, Any] = {"models": [{"name": MODEL, "targets": [target]}], "proxy": proxy}
    if shared_redis:
        host, port = REDIS_ADDRESS
        spec["redis"] = {
            "external": {
                "url": f"redis://{host}:{port}",
                "passwordSecretRef": {"name": REDIS_SECRET, "key": "password"},
            }
        }
    return {
        "apiVersion": "llmroute.dev/v1alpha1",
        "kind": "LLMRoute",
        "metadata": {"name": ROUTE, "namespace": NAMESPACE, "uid": "bench-route-uid"},
        "spec": spec,
    }


def _secret(name: str, **data: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def _pod(name: str, ip: str, template: dict[str, Any]) -> dict[str, Any]:
    """A Running pod made from a pod template, as the kubelet would run it."""
    template = copy.deepcopy(template)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**template.get("metadata", {}), "name": name, "namespace": NAMESPACE},
        "spec": template["spec"],
        "status": {"phase": "Running", "podIP": ip},
    }


@dataclass
class PodInputs:
    """A pod and the Secrets / ConfigMaps it reads, as the API server would serve them."""

    pod: dict[str, Any]
    secrets: dict[str, dict[str, Any]]
    configmaps: dict[str, dict[str, Any]]


def llmroute_pod(
    upstream_base: str, *, cpu: str = "1", workers: int = 0, **route: Any
) -> tuple[PodInputs, dict[str, Any]]:
    """(b): the rendered Deployment's pod with its rendered ConfigMap; also the config.
    `route`: bench_route's rpm and shared_redis."""
    rendered = render_route(
        parse_route(bench_route(upstream_base, cpu=cpu, workers=workers, **route))
    )
    deployment = next(o for o in rendered.objects if o["kind"] == "Deployment")
    config_map = next(o for o in rendered.objects if o["kind"] == "ConfigMap")
    master = rendered.generated_secret
    assert master is not None  # the route names no master key Secret
    secrets = {
        PROVIDER_SECRET: _secret(PROVIDER_SECRET, openai=PROVIDER_KEY),
        master["metadata"]["name"]: _secret(
            master["metadata"]["name"], **{MASTER_KEY_SECRET_KEY: MASTER_KEY}
        ),
        REDIS_SECRET: _secret(REDIS_SECRET, password=REDIS_PASSWORD),
    }
    pod = _pod("gw-litellm-0", PROXY_IPS["llmroute"], deployment["spec"]["template"])
    return (
        PodInputs(pod, secrets, {config_map["metadata"]["name"]: config_map}),
        rendered.config,
    )


def chart_config(rendered_config: dict[str, Any]) -> dict[str, Any]:
    """(c)'s config.yaml: the same models and routing, prometheus on, the chart's master key."""
    model_list = copy.deepcopy(rendered_config["model_list"])
    for deployment in model_list:
        # The chart passes provider keys as environment variables (environmentSecrets).
        deployment["litellm_params"]["api_key"] = "os.environ/OPENAI_API_KEY"
    return {
        "model_list": model_list,
        "router_settings": copy.deepcopy(rendered_config.get("router_settings") or {}),
        "litellm_settings": {"callbacks": ["prometheus"]},
        "general_settings": {"master_key": "os.environ/PROXY_MASTER_KEY"},
    }


def chart_pod(rendered_config: dict[str, Any], *, log_level: str = "INFO") -> PodInputs:
    """(c): the pod of litellm-helm's templates/deployment.yaml with its default values."""
    container = {
        "name": "litellm",
        # No command: the image's entrypoint (docker/prod_entrypoint.sh) runs `litellm "$@"`.
        "args": ["--config", "/etc/litellm/config.yaml"],
        "ports": [{"name": "http", "containerPort": 4000, "protocol": "TCP"}],
        "env": [
            {"name": "HOST", "value": "0.0.0.0"},
            {"name": "PORT", "value": "4000"},
            {
                "name": "PROXY_MASTER_KEY",
                "valueFrom": {"secretKeyRef": {"name": CHART_MASTER_SECRET, "key": "masterkey"}},
            },
            {"name": "LITELLM_LOG", "value": log_level},
        ],
        "envFrom": [{"secretRef": {"name": CHART_ENV_SECRET}}],
        "volumeMounts": [
            {
                "name": "litellm-config",
                "mountPath": "/etc/litellm/config.yaml",
                "subPath": "config.yaml",
            }
        ],
    }
    template = {
        "metadata": {"labels": {"app.kubernetes.io/name": "litellm"}},
        "spec": {
            "containers": [container],
            "volumes": [
                {
                    "name": "litellm-config",
                    "configMap": {
                        "name": CHART_CONFIG_MAP,
                        "items": [{"key": "config.yaml", "path": "config.yaml"}],
                    },
                }
            ],
        },
    }
    config_map = {
        "metadata": {"name": CHART_CONFIG_MAP},
        "data": {"config.yaml": yaml.safe_dump(chart_config(rendered_config), sort_keys=False)},
    }
    secrets = {
        CHART_MASTER_SECRET: _secret(CHART_MASTER_SECRET, masterkey=MASTER_KEY),
        CHART_ENV_SECRET: _secret(CHART_ENV_SECRET, OPENAI_API_KEY=PROVIDER_KEY),
    }
    return PodInputs(
        _pod("litellm-0", PROXY_IPS["chart"], template), secrets, {CHART_CONFIG_MAP: config_map}
    )


def bare_config(upstream_base: str) -> dict[str, Any]:
    """(d)'s config.yaml: one OpenAI model and a master key, nothing else."""
    return {
        "model_list": [
            {
                "model_name": MODEL,
                "litellm_params": {
                    "model": f"openai/{UPSTREAM_MODEL}",
                    "api_base": upstream_base,
                    "api_key": "os.environ/OPENAI_API_KEY",
                },
            }
        ],
        "general_settings": {"master_key": "os.environ/PROXY_MASTER_KEY"},
    }


def bare_pod(upstream_base: str, *, workers: int) -> PodInputs:
    """(d): `litellm --config ... --num_workers N`, the minimal config, LiteLLM's defaults."""
    container = {
        "name": "litellm",
        "command": ["litellm"],
        "args": ["--config", "/etc/litellm/config.yaml", "--num_workers", str(workers)],
        "ports": [{"name": "http", "containerPort": 4000, "protocol": "TCP"}],
        "env": [
            {
                "name": "PROXY_MASTER_KEY",
                "valueFrom": {"secretKeyRef": {"name": CHART_MASTER_SECRET, "key": "masterkey"}},
            },
            # Start-up only: the local stand-in cannot build the admin UI in its directory.
            {"name": "DISABLE_ADMIN_UI", "value": "True"},
            {"name": "HOME", "value": "/tmp"},
        ],
        "envFrom": [{"secretRef": {"name": CHART_ENV_SECRET}}],
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/litellm"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    template = {
        "metadata": {"labels": {"app.kubernetes.io/name": "litellm-bare"}},
        "spec": {
            "containers": [container],
            "volumes": [
                {"name": "config", "configMap": {"name": BARE_CONFIG_MAP}},
                {"name": "tmp", "emptyDir": {}},
            ],
        },
    }
    config_map = {
        "metadata": {"name": BARE_CONFIG_MAP},
        "data": {"config.yaml": yaml.safe_dump(bare_config(upstream_base), sort_keys=False)},
    }
    secrets = {
        CHART_MASTER_SECRET: _secret(CHART_MASTER_SECRET, masterkey=MASTER_KEY),
        CHART_ENV_SECRET: _secret(CHART_ENV_SECRET, OPENAI_API_KEY=PROVIDER_KEY),
    }
    return PodInputs(
        _pod("litellm-bare-0", PROXY_IPS["bare"], template),
        secrets,
        {BARE_CONFIG_MAP: config_map},
    )


def one_worker(inputs: PodInputs) -> PodInputs:
    """The pod with one worker, so no uvicorn supervisor: one that pings its workers every
    5 s and kills a worker that is slow to answer while it imports litellm, which on a busy
    machine it may do again and again (releases before 1.106 cannot lengthen that timeout)."""
    inputs = copy.deepcopy(inputs)
    container = inputs.pod["spec"]["containers"][0]
    args = list(container.get("args") or [])
    for option in (
        "--num_workers",
        "--max_requests_before_restart",
        "--max_requests_before_restart_jitter",
    ):
        if option in args:
            index = args.index(option)
            del args[index : index + 2]
    container["args"] = [*args, "--num_workers", "1"]
    return inputs


def pod_workers(inputs: PodInputs) -> int:
    """The --num_workers a pod's container passes (1 when it passes none)."""
    args = inputs.pod["spec"]["containers"][0].get("args") or []
    return int(args[args.index("--num_workers") + 1]) if "--num_workers" in args else 1


# -- variants: the same pods changed one way, to find what a setting is worth ----------------------


def _edit_config(inputs: PodInputs, edit: Callable[[dict[str, Any]], None]) -> PodInputs:
    inputs = copy.deepcopy(inputs)
    for config_map in inputs.configmaps.values():
        data = config_map.get("data") or {}
        if "config.yaml" in data:
            config = yaml.safe_load(data["config.yaml"])
            edit(config)
            data["config.yaml"] = yaml.safe_dump(config, sort_keys=False)
    return inputs


def _set_env(inputs: PodInputs, name: str, value: str) -> PodInputs:
    inputs = copy.deepcopy(inputs)
    container = inputs.pod["spec"]["containers"][0]
    env = [e for e in container.get("env") or [] if e["name"] != name]
    container["env"] = [*env, {"name": name, "value": value}]
    return inputs


def _one_socket(inputs: PodInputs) -> PodInputs:
    """The pod run by LiteLLM's CLI itself: uvicorn's workers share one listening socket."""
    inputs = copy.deepcopy(inputs)
    inputs.pod["spec"]["containers"][0]["command"] = ["litellm"]
    return inputs


def _no_callbacks(config: dict[str, Any]) -> None:
    settings = config.get("litellm_settings") or {}
    settings.pop("callbacks", None)
    settings.pop("prometheus_exclude_labels", None)


def _no_custom_auth(config: dict[str, Any]) -> None:
    (config.get("general_settings") or {}).pop("custom_auth", None)


# name -> (which pod it starts from, how it changes it).
VARIANTS: dict[str, tuple[str, Callable[[PodInputs], PodInputs]]] = {
    # What the prometheus callback costs (it stays on in every proposal).
    "llmroute-no-prometheus": ("llmroute", lambda p: _edit_config(p, _no_callbacks)),
    "chart-no-prometheus": ("chart", lambda p: _edit_config(p, _no_callbacks)),
    # What llmroute's custom auth (caller keys, allow-lists) costs.
    "llmroute-no-custom-auth": ("llmroute", lambda p: _edit_config(p, _no_custom_auth)),
    # The chart's INFO logging at llmroute's WARNING, and llmroute's at ERROR.
    "chart-log-warning": ("chart", lambda p: _set_env(p, "LITELLM_LOG", "WARNING")),
    "llmroute-log-error": ("llmroute", lambda p: _set_env(p, "LITELLM_LOG", "ERROR")),
    # Only the metrics llmroute reads or charts (the others become no-ops).
    "llmroute-lean-metrics": ("llmroute", lambda p: _edit_config(p, _lean_metrics)),
    # Without the label filter that keeps client addresses out of the series.
    "llmroute-all-labels": ("llmroute", lambda p: _edit_config(p, _no_excluded_labels)),
    # Without the launcher (`litellm --num_workers N` as it is: one socket the workers share).
    "llmroute-one-socket": ("llmroute", _one_socket),
}
# name -> bench_route's options: the route itself changed (an rpm limit, a shared Redis).
ROUTE_VARIANTS: dict[str, dict[str, Any]] = {
    "llmroute-rpm": {"rpm": UNREACHED_RPM},
    "llmroute-redis": {"rpm": UNREACHED_RPM, "shared_redis": True},
}
# Also "llmroute-workers-<N>": the route with spec.proxy.workers = N.
WORKERS_VARIANT = "llmroute-workers-"


# What llmroute reads (quota accounting) or charts (the dashboard), plus the deployment health
# series operators look at; every other metric LiteLLM defines is what "lean" turns off.
NEEDED_METRICS = frozenset(
    {
        "litellm_requests_metric",
        "litellm_spend_metric",
        "litellm_input_tokens_metric",
        "litellm_output_tokens_metric",
        "litellm_total_tokens_metric",
        "litellm_proxy_total_requests_metric",
        "litellm_proxy_failed_requests_metric",
        "litellm_request_total_latency_metric",
        "litellm_llm_api_latency_metric",
        "litellm_deployment_failure_responses",
        "litellm_deployment_success_responses",
        "litellm_deployment_total_requests",
        "litellm_deployment_state",
        "litellm_deployment_cooled_down",
        "litellm_deployment_successful_fallbacks",
        "litellm_deployment_failed_fallbacks",
    }
)


def _lean_metrics(config: dict[str, Any]) -> None:
    from typing import get_args

    # Importing litellm must not try to fetch its price map from the network.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from litellm.types.integrations.prometheus import DEFINED_PROMETHEUS_METRICS

    excluded = sorted(set(get_args(DEFINED_PROMETHEUS_METRICS)) - NEEDED_METRICS)
    config.setdefault("litellm_settings", {})["prometheus_exclude_metrics"] = excluded


def _no_excluded_labels(config: dict[str, Any]) -> None:
    (config.get("litellm_settings") or {}).pop("prometheus_exclude_labels", None)


def known_variant(name: str) -> bool:
    suffix = name.removeprefix(WORKERS_VARIANT)
    return (
        name in VARIANTS
        or name in ROUTE_VARIANTS
        or (name.startswith(WORKERS_VARIANT) and suffix.isdigit())
    )


# -- processes ---------------------------------------------------------------------------------


def _pinned(argv: tuple[str, ...] | list[str], cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus, *argv] if cpus else list(argv)


@dataclass
class Target:
    """One way to the upstream: where to send, with which key and model, and who serves it."""

    name: str
    url: str
    key: str
    model: str
    process: ManagedProcess | None = None
    launch: ProxyLaunch | None = None


def start_proxy(
    name: str,
    inputs: PodInputs,
    workdir: Path,
    cpus: str | None,
    host: str,
    *,
    litellm: Path | None = None,
) -> Target:
    with contextlib.suppress(OSError), socket.create_connection((host, PROXY_PORT), timeout=1):
        # A proxy left by an interrupted run would answer in place of this one.
        raise RuntimeError(f"something already listens at {host}:{PROXY_PORT}: stop it first")
    pod = copy.deepcopy(inputs.pod)
    pod["status"]["podIP"] = host
    launch = plan_proxy_launch(
        pod,
        secrets=inputs.secrets,
        configmaps=inputs.configmaps,
        pod_dir=workdir / name,
        litellm=litellm,
    )
    launch = dataclasses.replace(launch, argv=tuple(_pinned(launch.argv, cpus)))
    process = launch_proxy(launch, workdir / f"{name}.log")
    try:
        # One at a time: LiteLLM's start-up is seconds of CPU per worker, and several proxies
        # starting at once on a busy machine can take minutes.
        wait_http_ok(launch.health_url, 300, process=process)
    except BaseException:
        process.stop(grace=5)
        raise
    return Target(
        name,
        f"{launch.url}/v1/chat/completions",
        MASTER_KEY,
        MODEL,
        process=process,
        launch=launch,
    )


def group_cpu_seconds(leader: int) -> float:
    """CPU time of every process in the process group `leader` leads (a proxy and its workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        # fields[2] is the process group; [11], [12] utime and stime; [13], [14] of reaped children.
        if int(fields[2]) == leader:
            total += sum(int(f) for f in fields[11:15])
    return total / ticks


def group_rss_mib(leader: int) -> float:
    """Resident memory of a proxy and its workers (the process group `leader` leads)."""
    total_kib = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            if int(stat[stat.rindex(")") + 2 :].split()[2]) != leader:
                continue
            total_kib += rss_kib(int(entry)).get("VmRSS", 0)
        except (OSError, ValueError):
            continue
    return round(total_kib / 1024, 1)


def run_loadgen(
    target: Target,
    *,
    concurrency: int,
    requests: int | None,
    duration: float | None,
    warmup: float,
    cpus: str | None,
) -> dict[str, Any]:
    argv = [
        sys.executable,
        "-m",
        "benchmarks.loadgen",
        "--url",
        target.url,
        "--key",
        target.key,
        "--model",
        target.model,
        "--concurrency",
        str(concurrency),
        "--warmup",
        str(warmup),
    ]
    argv += ["--requests", str(requests)] if requests else ["--duration", str(duration)]
    load_before = load_average()
    cpu_before = group_cpu_seconds(target.process.pid) if target.process else None
    out = subprocess.run(
        _pinned(argv, cpus),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "NO_PROXY": "*", "no_proxy": "*"},
    )
    result = json.loads(out.stdout)
    if target.process is not None and cpu_before is not None:
        cpu = group_cpu_seconds(target.process.pid) - cpu_before
        result["proxy_cpu_s"] = round(cpu, 2)
        # Includes the warm-up's requests too: a rough CPU cost per answered request.
        served = result["ok"] + warmup * (result["requests_per_s"] or 0)
        result["proxy_served"] = round(served, 1)
        result["proxy_cpu_ms_per_request"] = round(cpu / served * 1000, 2) if served else None
        result["proxy_rss_mib"] = group_rss_mib(target.process.pid)
    result["load_average_before"] = load_before
    result["load_average_after"] = load_average()
    return result


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[None]:
    """A redis-server at REDIS_ADDRESS with REDIS_PASSWORD, keeping nothing on disk."""
    host, port = REDIS_ADDRESS
    process = subprocess.Popen(
        [
            "redis-server",
            "-",
            "--bind",
            host,
            "--port",
            str(port),
            "--save",
            "",
            "--dir",
            str(workdir),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdin is not None
    # The password on standard input (a config file), as the managed Redis gets it.
    process.stdin.write(f"requirepass {REDIS_PASSWORD}\n".encode())
    process.stdin.close()
    try:
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextlib.contextmanager
def upstream(delay: float, cpus: str | None, *, nagle: bool = False) -> Iterator[str]:
    """The fake OpenAI upstream in a process of its own; yields its API base URL."""
    port = free_port()
    argv = [sys.executable, "-m", "benchmarks.upstream", "--port", str(port), "--delay", str(delay)]
    if nagle:
        argv.append("--nagle")
    process = subprocess.Popen(
        _pinned(argv, cpus),
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}/v1"
        wait_http_ok(f"{base}/models", 30)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _check(target: Target) -> None:
    """One request that must be answered, before anything is measured."""
    request = urllib.request.Request(
        target.url,
        data=json.dumps(
            {"model": target.model, "messages": [{"role": "user", "content": "ping"}]}
        ).encode(),
        headers={"Authorization": f"Bearer {target.key}", "Content-Type": "application/json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=60) as response:
        body = json.loads(response.read())
    if not body.get("choices"):
        raise RuntimeError(f"{target.name}: no answer from {target.url}: {body}")


# -- the run -------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    levels = [int(c) for c in args.concurrency.split(",")]
    variants = [v for v in (args.variants or "").split(",") if v]
    for variant in variants:
        if not known_variant(variant):
            known = ", ".join([*VARIANTS, *ROUTE_VARIANTS])
            raise SystemExit(f"unknown variant {variant!r}; known: {known}")
    results: dict[str, Any] = {
        "benchmark": "gateway",
        "started": now_iso(),
        "machine": machine(),
        "load_average_start": load_average(),
        "settings": {
            "upstream_delay_s": args.delay,
            "concurrency": levels,
            "requests_per_level": args.requests,
            "duration_per_level_s": None if args.requests else args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "proxy_cpus": args.proxy_cpus or "unpinned",
            "proxy_cpu_limit": args.proxy_cpu_limit,
            "client_cpus": args.client_cpus or "unpinned",
            "variants": variants,
            "upstream_nagle": args.nagle,
        },
        "paths": {},
    }
    workdir = Path(tempfile.mkdtemp(prefix="llmroute-bench-gateway-"))
    with upstream(args.delay, args.client_cpus, nagle=args.nagle) as base:
        llmroute_inputs, rendered_config = llmroute_pod(base, cpu=args.proxy_cpu_limit)
        sources = {
            "llmroute": llmroute_inputs,
            "chart": chart_pod(rendered_config),
            "bare": bare_pod(base, workers=pod_workers(llmroute_inputs)),
        }
        proxies: list[Target] = []
        stack = contextlib.ExitStack()  # what variants need besides their proxy (a Redis)
        try:
            for name in ("llmroute", "chart", "bare"):
                proxies.append(
                    start_proxy(name, sources[name], workdir, args.proxy_cpus, PROXY_IPS[name])
                )
            if args.alt_litellm:
                args.alt_litellm = args.alt_litellm.absolute()
                results["settings"]["alt_litellm"] = litellm_version(args.alt_litellm)
                proxies.append(
                    start_proxy(
                        "alt-bare",
                        one_worker(sources["bare"]),
                        workdir,
                        args.proxy_cpus,
                        PROXY_IPS["alt-bare"],
                        litellm=args.alt_litellm,
                    )
                )
            results["settings"]["litellm"] = litellm_version(
                Path(sys.executable).parent / "litellm"
            )
            for index, variant in enumerate(variants):
                if variant.startswith(WORKERS_VARIANT):
                    workers = int(variant.removeprefix(WORKERS_VARIANT))
                    inputs = llmroute_pod(base, cpu=args.proxy_cpu_limit, workers=workers)[0]
                elif variant in ROUTE_VARIANTS:
                    route = ROUTE_VARIANTS[variant]
                    if route.get("shared_redis"):
                        stack.enter_context(redis_server(workdir))
                    inputs = llmroute_pod(base, cpu=args.proxy_cpu_limit, **route)[0]
                else:
                    source, change = VARIANTS[variant]
                    inputs = change(sources[source])
                proxies.append(
                    start_proxy(variant, inputs, workdir, args.proxy_cpus, f"127.0.3.{10 + index}")
                )
            results["argv"] = {p.name: list(p.launch.argv) for p in proxies if p.launch}
            direct = Target("direct", f"{base}/chat/completions", PROVIDER_KEY, UPSTREAM_MODEL)
            targets = [direct, *proxies]
            for target in targets:
                _check(target)
            runs: dict[str, dict[int, list[dict[str, Any]]]] = {
                t.name: {c: [] for c in levels} for t in targets
            }
            for concurrency in levels:
                # Rounds alternate the order, so no path always runs first (or last).
                for round_ in range(args.rounds):
                    for target in targets if round_ % 2 == 0 else targets[::-1]:
                        result = run_loadgen(
                            target,
                            concurrency=concurrency,
                            requests=args.requests,
                            duration=args.duration,
                            warmup=args.warmup,
                            cpus=args.client_cpus,
                        )
                        runs[target.name][concurrency].append(result)
                        print(
                            f"{target.name:>28} c={concurrency:<3} "
                            f"{result['requests_per_s']:>7} req/s "
                            f"p50 {result['latency']['p50_ms']} ms "
                            f"p99 {result['latency']['p99_ms']} ms errors {result['errors']} "
                            f"load {result['load_average_after'][0]}",
                            flush=True,
                        )
            for target in targets:
                results["paths"][target.name] = {
                    "levels": [combine(runs[target.name][c]) for c in levels],
                    "runs": [runs[target.name][c] for c in levels],
                }
            if args.profile:
                results["profiles"] = profile_proxies(
                    [p for p in proxies if p.name in args.profile.split(",")],
                    concurrency=args.profile_concurrency,
                    duration=args.profile_duration,
                    cpus=args.client_cpus,
                    out_dir=args.profile_dir,
                )
        finally:
            for proxy in proxies:
                if proxy.process is not None:
                    proxy.process.stop(grace=10)
            stack.close()
    results["comparison"] = compare(results["paths"], levels, args.delay)
    results["summary"] = summary(results["paths"], results["comparison"])
    results["load_average_end"] = load_average()
    results["finished"] = now_iso()
    if not args.keep_workdir:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    else:
        results["workdir"] = str(workdir)
    return results


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One level's rounds as one result: medians of the rates and percentiles."""
    if len(runs) == 1:
        return runs[0]

    def median(values: list[float | None]) -> float | None:
        present = sorted(v for v in values if v is not None)
        if not present:
            return None
        middle = len(present) // 2
        if len(present) % 2:
            return present[middle]
        return round((present[middle - 1] + present[middle]) / 2, 2)

    errors: dict[str, int] = {}
    for run in runs:
        for kind, count in run["errors"].items():
            errors[kind] = errors.get(kind, 0) + count
    return {
        "concurrency": runs[0]["concurrency"],
        "rounds": len(runs),
        "ok": sum(r["ok"] for r in runs),
        "errors": errors,
        "elapsed_s": round(sum(r["elapsed_s"] for r in runs), 3),
        "requests_per_s": median([r["requests_per_s"] for r in runs]),
        "latency": {key: median([r["latency"][key] for r in runs]) for key in runs[0]["latency"]},
        "generator_cpu": max(r["generator_cpu"] or 0 for r in runs),
        "proxy_cpu_ms_per_request": median([r.get("proxy_cpu_ms_per_request") for r in runs]),
        "proxy_cpu_s": round(sum(r.get("proxy_cpu_s") or 0 for r in runs), 2),
        "proxy_served": round(sum(r.get("proxy_served") or 0 for r in runs), 1),
        "proxy_rss_mib": median([r.get("proxy_rss_mib") for r in runs]),
        "load_average_before": runs[0]["load_average_before"],
        "load_average_after": runs[-1]["load_average_after"],
    }


def compare(paths: dict[str, Any], levels: list[int], delay: float) -> list[dict[str, Any]]:
    """Per level: the proxy's overhead over the direct path, and llmroute's throughput
    over the chart's."""
    rows = []
    for index, concurrency in enumerate(levels):
        direct = paths["direct"]["levels"][index]
        ours = paths["llmroute"]["levels"][index]
        chart = paths["chart"]["levels"][index]
        bare = paths["bare"]["levels"][index]

        def overhead(key: str, ours: dict[str, Any] = ours, direct: dict[str, Any] = direct):
            a, b = direct["latency"][key], ours["latency"][key]
            return None if a is None or b is None else round(b - a, 1)

        rows.append(
            {
                "concurrency": concurrency,
                "overhead_p50_ms": overhead("p50_ms"),
                "overhead_p99_ms": overhead("p99_ms"),
                "throughput_llmroute_over_chart": ratio(
                    ours["requests_per_s"], chart["requests_per_s"]
                ),
                "throughput_llmroute_over_bare": ratio(
                    ours["requests_per_s"], bare["requests_per_s"]
                ),
                "cpu_per_request_llmroute_over_bare": ratio(
                    ours["proxy_cpu_ms_per_request"], bare["proxy_cpu_ms_per_request"]
                ),
                # The closed-loop ceiling is concurrency / delay: near 1, the generator keeps up.
                "throughput_direct_over_ideal": ratio(
                    direct["requests_per_s"], concurrency / delay
                ),
            }
        )
    return rows


def cpu_ms_per_request(path: dict[str, Any]) -> float | None:
    """A path's proxy CPU over every request it served, all levels and rounds together."""
    cpu = sum(level.get("proxy_cpu_s") or 0 for level in path["levels"])
    served = sum(level.get("proxy_served") or 0 for level in path["levels"])
    return round(cpu / served * 1000, 2) if served else None


def summary(paths: dict[str, Any], comparison: list[dict[str, Any]]) -> dict[str, Any]:
    """The headline ratios, and the two lines docs/benchmarks.md quotes."""
    cpu = {name: cpu_ms_per_request(path) for name, path in paths.items() if name != "direct"}
    cpu_ratio = ratio(cpu["llmroute"], cpu["bare"])
    at_10 = next((r for r in comparison if r["concurrency"] == 10), None)
    throughput_ratio = at_10["throughput_llmroute_over_chart"] if at_10 else None
    return {
        "cpu_ms_per_request": cpu,
        "cpu_llmroute_over_bare": cpu_ratio,
        "throughput_llmroute_over_chart_at_10": throughput_ratio,
        "lines": [
            f"llmroute / bare LiteLLM CPU per request: {cpu_ratio}",
            f"llmroute / LiteLLM chart default throughput at concurrency 10: {throughput_ratio}",
        ],
    }


def litellm_version(litellm: Path) -> str | None:
    """The release of the litellm package next to a `litellm` executable."""
    python = litellm.parent / "python"
    out = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() or None


def profile_proxies(
    proxies: list[Target],
    *,
    concurrency: int,
    duration: float,
    cpus: str | None,
    out_dir: Path,
) -> dict[str, Any]:
    """py-spy on each proxy (every worker) under the same load, after the measured rounds:
    collapsed stacks for the accounting and a flame graph (SVG) to look at."""
    out_dir.mkdir(parents=True, exist_ok=True)
    profiles: dict[str, Any] = {}
    for proxy in proxies:
        assert proxy.process is not None
        raw = out_dir / f"gateway-{proxy.name}.txt"
        svg = out_dir / f"gateway-{proxy.name}.svg"
        samplers = [
            Sampler(proxy.process.pid, raw, rate=PROFILE_RATE),
            Sampler(proxy.process.pid, svg, rate=PROFILE_RATE, output_format="flamegraph"),
        ]
        if not all(sampler.start() for sampler in samplers):
            return {"skipped": "py-spy is not installed (the test extra pins it)"}
        try:
            load = run_loadgen(
                proxy,
                concurrency=concurrency,
                requests=None,
                duration=duration,
                warmup=0,
                cpus=cpus,
            )
        finally:
            for sampler in samplers:
                sampler.stop()
        profiles[proxy.name] = {
            "collapsed": str(raw),
            "flamegraph": str(svg),
            "requests": load["ok"],
            "summary": summarize(raw, top=40),
        }
    return profiles


# Samples per second per process: enough for shares of a few percent in a 20 s window.
PROFILE_RATE = 200


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gateway_overhead",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--concurrency", default="1,10,50", help="comma-separated levels")
    parser.add_argument(
        "--requests", type=int, help="requests per path and level (instead of --duration)"
    )
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per path and level")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each")
    parser.add_argument(
        "--rounds", type=int, default=1, help="measurements per path and level (medians reported)"
    )
    parser.add_argument("--delay", type=float, default=0.05, help="upstream answer delay (s)")
    parser.add_argument(
        "--proxy-cpus",
        default="1",
        help="taskset CPU list for every proxy (same for all); empty: unpinned",
    )
    parser.add_argument(
        "--proxy-cpu-limit",
        default="1",
        help="the route's proxy CPU limit, from which llmroute derives its worker count",
    )
    parser.add_argument(
        "--client-cpus",
        default="0",
        help="taskset CPU list for the upstream fake and the load generator; empty: unpinned",
    )
    parser.add_argument(
        "--variants",
        default="",
        help="extra proxies to measure, comma-separated: "
        f"{', '.join([*VARIANTS, *ROUTE_VARIANTS])}, {WORKERS_VARIANT}<N>",
    )
    parser.add_argument(
        "--nagle",
        action="store_true",
        help="leave Nagle's algorithm on in the upstream fake (+40 ms per answer)",
    )
    parser.add_argument(
        "--alt-litellm",
        type=Path,
        help="the `litellm` executable of a second venv with another release: (d) runs on it too",
    )
    parser.add_argument(
        "--profile",
        default="",
        help="proxies to profile with py-spy after the measured rounds, e.g. llmroute,bare",
    )
    parser.add_argument("--profile-concurrency", type=int, default=10)
    parser.add_argument("--profile-duration", type=float, default=20.0)
    parser.add_argument(
        "--profile-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "llmroute-gateway-profiles",
        help="where the collapsed stacks and flame graphs go",
    )
    parser.add_argument("--out", type=Path, help="result file (default: benchmarks/results/)")
    parser.add_argument("--keep-workdir", action="store_true")
    args = parser.parse_args(argv)
    # Stopped with SIGTERM, it stops its proxies and their workers on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    results = run(args)
    out = write_results(results, args.out, "gateway")
    print(json.dumps(results["comparison"], indent=2))
    for line in results["summary"]["lines"]:
        print(line)
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
