"""The process runner: real processes for the pods that kwok only pretends to run.

kwok makes llmroute's pods Running with IPs from the pod network (localcluster.podnet; a
loopback /24 where there is none), but nothing executes their containers. The runner is
the node's kubelet for them: it watches the pods labelled
``app.kubernetes.io/managed-by=llmroute`` and, for each one that is Running with an IP,
makes the pod's network namespace (a veth on the cluster's bridge, at the pod's IP) and:

- a proxy pod (container ``litellm``): starts the real ``litellm`` proxy exactly as the pod
  spec says -- its command (``litellm``, or ``python3`` for the shipped launcher, both taken
  from the venv LiteLLM is installed in), its args, its env resolved from Secrets/ConfigMaps
  read from the API server, its ConfigMap/Secret/emptyDir volumes written to a per-pod
  directory -- listening at the pod's IP. Paths under a mount
  (``--config /etc/litellm/config.yaml``) are rewritten into that directory. Secret and
  ConfigMap volumes are refreshed while the pod runs, as the kubelet does, so key rotation
  behaves as in a cluster.
- an Ollama pod (container ``ollama``): runs the container's own command -- the real pull
  script, which starts the real ``ollama serve`` (built by hack/build-tools.sh) -- with the
  pod's env, its address as ``OLLAMA_HOST`` and its PersistentVolumeClaim as the model store
  (``OLLAMA_MODELS``). A claim's directory outlives its pods, as a volume does. The runner
  acts as the kubelet for this pod's status: it runs the readiness probe and reports Ready
  and the container's state (a failed pull: CrashLoopBackOff with the termination message).

- a Redis pod (container ``redis``, the route's managed Redis): runs the container's own
  command -- ``/bin/sh -c`` feeding ``requirepass`` from the Secret-fed environment to Debian's
  ``redis-server`` (apt package ``redis-server``) -- with the pod's env and args, bound to the
  pod's address.

Pods resolve the names of the headless Services of the pods the runner serves
(``<subdomain>.<namespace>.svc``, as cluster DNS answers for a StatefulSet's governing
Service) through a per-pod hosts file, updated as those pods turn Ready or go.

It runs the container's startup, readiness and liveness probes (localcluster.probes) and
writes the pod's Ready condition and container status, which kwok leaves False for these
pods: Ready means serving. When a pod is deleted, stops running or changes IP, its process
gets SIGTERM after the preStop sleep (then SIGKILL after the grace period), and its
directory and network namespace are removed, so a rollout swaps processes. A process that
exits on its own, or fails its liveness probe, is restarted with back-off, like a
container.

The pure part -- what to run for a pod: argv, env, files -- is ``plan_proxy_launch``; the
rest does I/O. Started processes never outlive the runner: each gets its own process group,
is killed by ``stop()`` and at interpreter exit, and asks the kernel (PR_SET_PDEATHSIG) to
kill it if the thread that started it dies.

    python -m localcluster.runner --kubeconfig PATH --workdir DIR [--namespace NS]
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import dataclasses
import json
import logging
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from . import podnet, tinymodel, tools
from .probes import Probe, Prober, parse_probe
from .processes import die_with_parent, tail

__all__ = [
    "FileContent",
    "ManagedProcess",
    "OllamaLaunch",
    "PodNotReady",
    "ProcessInfo",
    "ProcessRunner",
    "ProxyLaunch",
    "RedisLaunch",
    "UnsupportedPod",
    "cluster_hosts",
    "launch_proxy",
    "main",
    "plan_ollama_launch",
    "plan_proxy_launch",
    "plan_redis_launch",
    "pod_references",
    "pod_status_patch",
    "pre_stop_sleep",
    "sync_files",
    "wait_http_ok",
]

log = logging.getLogger(__name__)

MANAGED_BY_SELECTOR = "app.kubernetes.io/managed-by=llmroute"
COMPONENT_LABEL = "app.kubernetes.io/component"
PROXY_CONTAINER = "litellm"
# A proxy container may run LiteLLM's CLI or the Python interpreter LiteLLM is installed for.
PYTHON_PROGRAMS = frozenset({"python", "python3"})
OLLAMA_CONTAINER = "ollama"
REDIS_CONTAINER = "redis"
# The container each served component runs, by its app.kubernetes.io/component label.
COMPONENT_CONTAINERS = {
    "proxy": PROXY_CONTAINER,
    "ollama": OLLAMA_CONTAINER,
    "redis": REDIS_CONTAINER,
}
PROXY_PORT = 4000
OLLAMA_PORT = 11434
REDIS_PORT = 6379
# Where a pod's processes find commands: Debian's redis-server is /usr/bin/redis-server.
CONTAINER_PATH = "/usr/local/bin:/usr/bin:/bin"
PROXY_HEALTH_PATH = "/health/liveliness"
KEYS_DIR_ENV = "LLMROUTE_KEYS_DIR"
KEYS_MOUNT = "/etc/llmroute/keys"
# Where the kubelet lets a container explain its failure; the pull script writes it at
# LLMROUTE_TERMINATION_LOG when set (the host's /dev is not the container's).
TERMINATION_LOG_ENV = "LLMROUTE_TERMINATION_LOG"
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"

# What a process inherits from the runner's environment; everything else comes from the
# pod spec, as in a container. (An inherited HTTP proxy variable, for one, would send the
# proxy's loopback calls to the upstream fakes elsewhere.)
_PASSTHROUGH_ENV = ("HOME", "USER", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")


class PodNotReady(Exception):
    """The pod cannot start yet: a Secret, ConfigMap or key it needs is missing.

    The kubelet reports these as CreateContainerConfigError or keeps the pod in
    ContainerCreating; the runner retries.
    """


class UnsupportedPod(Exception):
    """The pod asks for something the runner cannot stand in for (e.g. another command)."""


# -- the pure part: what to run for a pod -----------------------------------------------------


@dataclass(frozen=True)
class FileContent:
    data: bytes
    mode: int = 0o644


@dataclass(frozen=True)
class ProxyLaunch:
    """Everything needed to start one proxy pod's process."""

    namespace: str
    pod: str
    uid: str
    host: str
    port: int
    argv: tuple[str, ...]
    env: dict[str, str]  # the whole environment of the process
    cwd: Path
    pod_dir: Path
    files: dict[Path, FileContent]  # absolute paths under pod_dir
    dirs: tuple[Path, ...]  # directories to create (every mount point that is a directory)
    mounts: dict[str, Path]  # container mount path -> local path
    grace_seconds: float

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def health_url(self) -> str:
        return self.url + PROXY_HEALTH_PATH


@dataclass(frozen=True)
class OllamaLaunch:
    """Everything needed to start one Ollama pod's container (its command, as in the spec)."""

    namespace: str
    pod: str
    uid: str
    host: str
    port: int
    argv: tuple[str, ...]
    env: dict[str, str]  # the whole environment of the process
    pod_dir: Path
    files: dict[Path, FileContent]
    dirs: tuple[Path, ...]
    mounts: dict[str, Path]  # container mount path -> local path
    claims: dict[str, Path]  # PersistentVolumeClaim name -> its directory (outside pod_dir)
    readiness_argv: tuple[str, ...] | None  # the exec readiness probe, paths made local
    termination_log: Path
    fallback_to_logs: bool  # terminationMessagePolicy: FallbackToLogsOnError
    image: str
    grace_seconds: float

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass(frozen=True)
class RedisLaunch:
    """Everything needed to start one Redis pod's container (its command, as in the spec)."""

    namespace: str
    pod: str
    uid: str
    host: str
    port: int
    argv: tuple[str, ...]
    env: dict[str, str]  # the whole environment of the process
    pod_dir: Path
    files: dict[Path, FileContent]
    dirs: tuple[Path, ...]
    grace_seconds: float

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"


# What the runner starts every served container from.
_Launch = ProxyLaunch | OllamaLaunch | RedisLaunch


def pod_component(pod: Mapping[str, Any]) -> str | None:
    """ "proxy", "ollama" or "redis" for the pods the runner serves, else None."""
    component = (pod.get("metadata", {}).get("labels") or {}).get(COMPONENT_LABEL)
    wanted = COMPONENT_CONTAINERS.get(component or "")
    if wanted and any(c.get("name") == wanted for c in _containers(pod)):
        return component
    return None


def pod_is_running(pod: Mapping[str, Any]) -> bool:
    """Running with an IP and not being deleted: the kubelet would run its containers."""
    status = pod.get("status") or {}
    return (
        status.get("phase") == "Running"
        and bool(status.get("podIP"))
        and not pod.get("metadata", {}).get("deletionTimestamp")
    )


def pod_references(pod: Mapping[str, Any]) -> tuple[set[str], set[str]]:
    """Names of the Secrets and ConfigMaps the pod's containers and volumes read."""
    secrets: set[str] = set()
    configmaps: set[str] = set()
    for container in _containers(pod):
        for source in container.get("envFrom") or []:
            if "secretRef" in source:
                secrets.add(source["secretRef"]["name"])
            if "configMapRef" in source:
                configmaps.add(source["configMapRef"]["name"])
        for var in container.get("env") or []:
            value_from = var.get("valueFrom") or {}
            if "secretKeyRef" in value_from:
                secrets.add(value_from["secretKeyRef"]["name"])
            if "configMapKeyRef" in value_from:
                configmaps.add(value_from["configMapKeyRef"]["name"])
    for volume in pod.get("spec", {}).get("volumes") or []:
        sources = [volume, *((volume.get("projected") or {}).get("sources") or [])]
        for source in sources:
            if "secret" in source:
                secret = source["secret"]
                name = secret.get("secretName") or secret.get("name")
                if name:
                    secrets.add(name)
            if "configMap" in source:
                configmaps.add(source["configMap"]["name"])
    return secrets, configmaps


def plan_proxy_launch(
    pod: Mapping[str, Any],
    *,
    secrets: Mapping[str, Mapping[str, Any]],
    configmaps: Mapping[str, Mapping[str, Any]],
    pod_dir: Path,
    litellm: Path | None = None,
    base_env: Mapping[str, str] | None = None,
) -> ProxyLaunch:
    """What to run for a proxy pod, computed without touching the disk or the API.

    ``secrets`` / ``configmaps`` map names to the objects as the API serves them (Secret
    ``data`` base64-encoded). Raises PodNotReady when something the pod needs is missing.
    """
    metadata = pod.get("metadata", {})
    host = (pod.get("status") or {}).get("podIP")
    if not host:
        raise PodNotReady("the pod has no IP yet")
    container = _container(pod, PROXY_CONTAINER)
    litellm = litellm or Path(sys.executable).parent / "litellm"

    files, dirs, mounts = mount_layout(
        pod, container, secrets=secrets, configmaps=configmaps, pod_dir=pod_dir
    )

    def rewrite(value: str) -> str:
        return _rewrite_path(value, pod_dir, mounts)

    pod_env = resolve_env(pod, container, secrets=secrets, configmaps=configmaps)
    for name, value in pod_env.items():
        pod_env[name] = (
            os.pathsep.join(rewrite(p) for p in value.split(os.pathsep))
            if name == "PYTHONPATH"
            else rewrite(value)
        )

    command = [_expand(part, pod_env) for part in container.get("command") or []]
    args = [_expand(part, pod_env) for part in container.get("args") or []]
    program = PurePosixPath(command[0]).name if command else "litellm"
    if program == "litellm":
        executable = litellm
    elif program in PYTHON_PROGRAMS:
        # The interpreter LiteLLM is installed for (the pod runs it through the shipped
        # launcher, `python3 -m llmroute_proxy_workers`).
        executable = litellm.parent / "python"
    else:
        raise UnsupportedPod(
            f"container {PROXY_CONTAINER!r} runs {command[0]!r}, neither litellm nor python"
        )
    tail = [rewrite(a) for a in command[1:] + args]
    tail = _set_option(tail, "--host", host)
    port_arg = _get_option(tail, "--port")
    if port_arg is None:
        port = _container_port(container, PROXY_PORT)
        tail += ["--port", str(port)]
    else:
        port = int(port_arg)

    config = _get_option(tail, "--config") or _get_option(tail, "-c")
    config_dir = Path(config).parent if config else pod_dir

    env = dict(base_env if base_env is not None else default_base_env(litellm))
    env.update(pod_env)
    python_path = [str(config_dir)] + [p for p in pod_env.get("PYTHONPATH", "").split(":") if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(python_path))
    # No network: the proxy must not fetch the model price map at start.
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    if KEYS_DIR_ENV not in env and _in_pod_dir(KEYS_MOUNT, mounts):
        env[KEYS_DIR_ENV] = rewrite(KEYS_MOUNT)
    if "TMPDIR" not in pod_env and "/tmp" in mounts:
        # In a container /tmp is the pod's own volume; on the host, proxies would otherwise
        # share temp files (LiteLLM's prometheus multi-process directory among them).
        env["TMPDIR"] = str(mounts["/tmp"])

    grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
    return ProxyLaunch(
        namespace=metadata.get("namespace", "default"),
        pod=metadata.get("name", ""),
        uid=metadata.get("uid", ""),
        host=host,
        port=port,
        argv=(str(executable), *tail),
        env=env,
        cwd=config_dir,
        pod_dir=pod_dir,
        files=files,
        dirs=dirs,
        mounts=mounts,
        grace_seconds=30.0 if grace is None else float(grace),
    )


@dataclass(frozen=True)
class _ServerPodLayout:
    """Where a server pod's (Ollama's, Redis's) mounts land on this host: volume claims under
    ``volumes_dir/<namespace>_<claim>``, other mounts under ``pod_dir``."""

    namespace: str
    host: str
    container: Mapping[str, Any]
    files: dict[Path, FileContent]
    dirs: tuple[Path, ...]  # under pod_dir (the claims' directories are not among them)
    mounts: dict[str, Path]  # container mount path -> local path
    claims: dict[str, Path]  # PersistentVolumeClaim name -> its directory

    def local_path(self, value: str) -> str:
        """A path in the container as a path on this host."""
        # The deepest mount holding the path wins, as in the container's mount table.
        for mount_path in sorted(self.mounts, key=len, reverse=True):
            if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
                return str(self.mounts[mount_path] / value[len(mount_path) :].lstrip("/"))
        return value


def _server_pod_layout(
    pod: Mapping[str, Any],
    container_name: str,
    *,
    pod_dir: Path,
    volumes_dir: Path,
    secrets: Mapping[str, Mapping[str, Any]],
    configmaps: Mapping[str, Mapping[str, Any]],
) -> _ServerPodLayout:
    namespace = pod.get("metadata", {}).get("namespace", "default")
    host = (pod.get("status") or {}).get("podIP")
    if not host:
        raise PodNotReady("the pod has no IP yet")
    container = _container(pod, container_name)
    files, dirs, mounts = mount_layout(
        pod, container, secrets=secrets, configmaps=configmaps, pod_dir=pod_dir
    )
    volumes = {v["name"]: v for v in (pod.get("spec") or {}).get("volumes") or []}
    claims: dict[str, Path] = {}
    for mount in container.get("volumeMounts") or []:
        claim = (volumes.get(mount["name"]) or {}).get("persistentVolumeClaim")
        if claim is None:
            continue
        local = volumes_dir / f"{namespace}_{claim['claimName']}"
        claims[claim["claimName"]] = local
        mount_path = mount["mountPath"].rstrip("/") or "/"
        dirs = tuple(d for d in dirs if d != mounts[mount_path])
        mounts[mount_path] = local
    return _ServerPodLayout(namespace, host, container, files, dirs, mounts, claims)


def plan_ollama_launch(
    pod: Mapping[str, Any],
    *,
    pod_dir: Path,
    volumes_dir: Path,
    ollama: Path,
    secrets: Mapping[str, Mapping[str, Any]] | None = None,
    configmaps: Mapping[str, Mapping[str, Any]] | None = None,
) -> OllamaLaunch:
    """What to run for an Ollama pod, computed without touching the disk or the API.

    The container's command runs as written (``/bin/sh -c <pull script>``, or ``ollama serve``
    when it has none, as the image's entrypoint does) with ``ollama`` first on PATH. Each
    PersistentVolumeClaim mount is ``volumes_dir/<namespace>_<claim>``; other mounts land
    under ``pod_dir``. Env values that are paths in a mount are made local, and
    ``OLLAMA_HOST`` is the pod's IP and port.
    """
    metadata = pod.get("metadata", {})
    secrets = secrets or {}
    configmaps = configmaps or {}
    layout = _server_pod_layout(
        pod,
        OLLAMA_CONTAINER,
        pod_dir=pod_dir,
        volumes_dir=volumes_dir,
        secrets=secrets,
        configmaps=configmaps,
    )
    container, local_path = layout.container, layout.local_path
    port = _container_port(container, OLLAMA_PORT)
    env = {
        "PATH": os.pathsep.join([str(ollama.parent), "/usr/local/bin", "/usr/bin", "/bin"]),
        **{n: os.environ[n] for n in ("LANG", "LC_ALL", "TZ") if n in os.environ},
    }
    for name, value in resolve_env(pod, container, secrets=secrets, configmaps=configmaps).items():
        env[name] = local_path(value) if value.startswith("/") else value
    # 0.0.0.0 in a pod means the pod's own address; here the pods share the host's network.
    env["OLLAMA_HOST"] = f"{layout.host}:{port}"
    message_path = container.get("terminationMessagePath") or DEFAULT_TERMINATION_MESSAGE_PATH
    termination_log = _local(pod_dir, message_path)
    env[TERMINATION_LOG_ENV] = str(termination_log)

    command = [_expand(part, env) for part in container.get("command") or []]
    args = [_expand(part, env) for part in container.get("args") or []]
    if not command:
        argv = [str(ollama), *(args or ["serve"])]
    elif PurePosixPath(command[0]).name in ("sh", "bash", "dash"):
        argv = ["/bin/sh", *command[1:], *args]
    elif PurePosixPath(command[0]).name == "ollama":
        argv = [str(ollama), *command[1:], *args]
    else:
        raise UnsupportedPod(f"container {OLLAMA_CONTAINER!r} runs {command[0]!r}")

    probe = (container.get("readinessProbe") or {}).get("exec")
    readiness = tuple(local_path(a) for a in probe["command"]) if probe else None
    grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
    return OllamaLaunch(
        namespace=layout.namespace,
        pod=metadata.get("name", ""),
        uid=metadata.get("uid", ""),
        host=layout.host,
        port=port,
        argv=tuple(argv),
        env=env,
        pod_dir=pod_dir,
        files=layout.files,
        dirs=(*layout.dirs, *layout.claims.values(), termination_log.parent),
        mounts=layout.mounts,
        claims=layout.claims,
        readiness_argv=readiness,
        termination_log=termination_log,
        fallback_to_logs=container.get("terminationMessagePolicy") == "FallbackToLogsOnError",
        image=container.get("image", ""),
        grace_seconds=30.0 if grace is None else float(grace),
    )


def plan_redis_launch(
    pod: Mapping[str, Any],
    *,
    pod_dir: Path,
    volumes_dir: Path,
    secrets: Mapping[str, Mapping[str, Any]] | None = None,
    configmaps: Mapping[str, Mapping[str, Any]] | None = None,
) -> RedisLaunch:
    """What to run for a Redis pod, computed without touching the disk or the API.

    The container's command runs as written (``/bin/sh -c <script> ...``, or
    ``redis-server`` with the args when it has none, as the image's entrypoint does) with
    the container's env, and ``--bind <pod IP>`` appended: in a pod, Redis listens on the
    pod's own address. Paths in a mount (``--dir /data``) are made local; a
    PersistentVolumeClaim mount is ``volumes_dir/<namespace>_<claim>``, as for Ollama.
    """
    metadata = pod.get("metadata", {})
    secrets = secrets or {}
    configmaps = configmaps or {}
    layout = _server_pod_layout(
        pod,
        REDIS_CONTAINER,
        pod_dir=pod_dir,
        volumes_dir=volumes_dir,
        secrets=secrets,
        configmaps=configmaps,
    )
    host, container, local_path = layout.host, layout.container, layout.local_path
    env = {
        "PATH": CONTAINER_PATH,
        **{n: os.environ[n] for n in ("LANG", "LC_ALL", "TZ") if n in os.environ},
    }
    env.update(resolve_env(pod, container, secrets=secrets, configmaps=configmaps))
    command = [_expand(part, env) for part in container.get("command") or []]
    args = [local_path(_expand(part, env)) for part in container.get("args") or []]
    if not command:
        argv = ["redis-server", *args]
    elif PurePosixPath(command[0]).name in ("sh", "bash", "dash"):
        argv = ["/bin/sh", *command[1:], *args]
    elif PurePosixPath(command[0]).name == "redis-server":
        argv = ["redis-server", *command[1:], *args]
    else:
        raise UnsupportedPod(f"container {REDIS_CONTAINER!r} runs {command[0]!r}")
    grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
    return RedisLaunch(
        namespace=layout.namespace,
        pod=metadata.get("name", ""),
        uid=metadata.get("uid", ""),
        host=host,
        port=_container_port(container, REDIS_PORT),
        argv=(*argv, "--bind", host),
        env=env,
        pod_dir=pod_dir,
        files=layout.files,
        dirs=(*layout.dirs, *layout.claims.values()),
        grace_seconds=30.0 if grace is None else float(grace),
    )


def cluster_hosts(pods: Iterable[tuple[Mapping[str, Any], str]], base: str = "") -> str:
    """A hosts file answering what cluster DNS answers for headless Services: each (pod, IP)
    whose pod names a ``subdomain`` (a StatefulSet's pods name their governing Service)
    is ``<subdomain>.<ns>.svc`` and ``<hostname>.<subdomain>.<ns>.svc`` (and the
    ``.cluster.local`` forms). Give it the Ready pods only, as DNS lists Ready endpoints.

    ``base``: the node's own hosts file, kept first. The pods share the node's host name (no
    UTS namespace of their own), and a process that looks its host name up must find it
    there: the pod's network namespace reaches no DNS server, so a miss waits out the
    resolver's timeouts (10 s each, enough to fail a proxy's startup probe)."""
    lines = base.splitlines() or ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-loopback"]
    lines.append("# cluster DNS of the local cluster (localcluster.runner)")
    for pod, ip in sorted(pods, key=lambda item: (item[0]["metadata"]["name"], item[1])):
        spec, metadata = pod.get("spec") or {}, pod.get("metadata") or {}
        subdomain = spec.get("subdomain")
        if not subdomain:
            continue
        namespace = metadata.get("namespace", "default")
        hostname = spec.get("hostname") or metadata.get("name", "")
        service = f"{subdomain}.{namespace}.svc"
        names = [service, f"{service}.cluster.local"]
        names += [f"{hostname}.{service}", f"{hostname}.{service}.cluster.local"]
        lines.append(f"{ip}\t{' '.join(names)}")
    return "\n".join(lines) + "\n"


def _node_hosts() -> str:
    try:
        return Path("/etc/hosts").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def pre_stop_sleep(pod: Mapping[str, Any], component: str) -> float:
    """Seconds of the served container's ``preStop: {sleep: ...}`` hook (0 without)."""
    name = COMPONENT_CONTAINERS[component]
    try:
        container = _container(pod, name)
    except UnsupportedPod:
        return 0.0
    hook = ((container.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}
    return float(hook.get("seconds", 0))


def pod_status_patch(
    pod: Mapping[str, Any],
    *,
    container: str,
    ready: bool,
    restarts: int,
    running: bool,
    started_at: str,
    last_exit: int | None,
    last_message: str = "",
    waiting_reason: str = "",
) -> dict[str, Any] | None:
    """The status patch that makes the pod say what the runner sees (the kubelet's
    part: Ready, ContainersReady, the container's ready flag, state and restart count, and
    the last exit with its termination message); None when the pod says it already."""
    status = pod.get("status") or {}
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    current = {c.get("name"): c for c in status.get("containerStatuses") or []}
    mine = current.get(container) or {}
    others_ready = all(
        bool((current.get(c["name"]) or {}).get("ready"))
        for c in _containers(pod)
        if c.get("name") != container
    )
    pod_ready = ready and others_ready
    wanted = "True" if pod_ready else "False"
    if (
        conditions.get("Ready") == wanted
        and conditions.get("ContainersReady") == wanted
        and bool(mine.get("ready")) == ready
        and int(mine.get("restartCount") or 0) == restarts
        and ("running" in (mine.get("state") or {})) == running
        and ((mine.get("lastState") or {}).get("terminated") or {}).get("message", "")
        == last_message
    ):
        return None
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if running:
        state: dict[str, Any] = {"running": {"startedAt": started_at or now}}
    else:
        reason = "CrashLoopBackOff" if restarts else "ContainerCreating"
        state = {"waiting": {"reason": reason, "message": waiting_reason[:200]}}
    statuses = []
    for spec in _containers(pod):
        entry = dict(current.get(spec["name"]) or {"name": spec["name"]})
        entry.setdefault("image", spec.get("image", ""))
        entry.setdefault("imageID", "")
        if spec["name"] == container:
            entry.update(ready=ready, started=running, restartCount=restarts, state=state)
            if last_exit is not None:
                terminated = {"exitCode": last_exit, "reason": "Error", "finishedAt": now}
                if last_message:
                    terminated["message"] = last_message
                entry["lastState"] = {"terminated": terminated}
        statuses.append(entry)
    return {
        "status": {
            "conditions": [
                {"type": "Ready", "status": wanted, "lastTransitionTime": now},
                {"type": "ContainersReady", "status": wanted, "lastTransitionTime": now},
            ],
            "containerStatuses": statuses,
        }
    }


def default_base_env(litellm: Path) -> dict[str, str]:
    env = {name: os.environ[name] for name in _PASSTHROUGH_ENV if name in os.environ}
    env["PATH"] = os.pathsep.join([str(litellm.parent), os.environ.get("PATH", os.defpath)])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def resolve_env(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    *,
    secrets: Mapping[str, Mapping[str, Any]],
    configmaps: Mapping[str, Mapping[str, Any]],
) -> dict[str, str]:
    """The container's environment as the kubelet computes it (envFrom, then env)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            ref = source["configMapRef"]
            data = _configmap_data(configmaps, ref["name"], ref.get("optional", False))
        else:
            ref = source["secretRef"]
            data = _secret_data(secrets, ref["name"], ref.get("optional", False))
        for key, value in (data or {}).items():
            name = prefix + key
            if re.fullmatch(r"[-._a-zA-Z][-._a-zA-Z0-9]*", name):
                env[name] = value.decode(errors="replace")
    for var in container.get("env") or []:
        name = var["name"]
        if "valueFrom" not in var:
            env[name] = _expand(var.get("value", ""), env)
            continue
        value_from = var["valueFrom"]
        value: str | None
        if "secretKeyRef" in value_from:
            value = _key_ref(secrets, value_from["secretKeyRef"], "Secret", _secret_data)
        elif "configMapKeyRef" in value_from:
            value = _key_ref(
                configmaps, value_from["configMapKeyRef"], "ConfigMap", _configmap_data
            )
        elif "fieldRef" in value_from:
            value = _field_ref(pod, value_from["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in value_from:
            value = _resource_field_ref(pod, container, value_from["resourceFieldRef"])
        else:
            raise UnsupportedPod(f"env {name}: unsupported valueFrom {sorted(value_from)}")
        if value is not None:
            env[name] = value
    return env


def mount_layout(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    *,
    secrets: Mapping[str, Mapping[str, Any]],
    configmaps: Mapping[str, Mapping[str, Any]],
    pod_dir: Path,
) -> tuple[dict[Path, FileContent], tuple[Path, ...], dict[str, Path]]:
    """Files and directories of the container's volume mounts under ``pod_dir``.

    Each mount path /a/b lands at ``pod_dir``/a/b, so nested mounts nest as in a container.
    Returns (files, directories, mount path -> local path).
    """
    volumes = {v["name"]: v for v in (pod.get("spec") or {}).get("volumes") or []}
    files: dict[Path, FileContent] = {}
    dirs: list[Path] = []
    mounts: dict[str, Path] = {}
    for mount in container.get("volumeMounts") or []:
        mount_path = mount["mountPath"]
        target = _local(pod_dir, mount_path)
        mounts[mount_path.rstrip("/") or "/"] = target
        volume = volumes.get(mount["name"])
        if volume is None:
            raise UnsupportedPod(f"volumeMount {mount_path} names no volume {mount['name']!r}")
        content = volume_files(pod, volume, secrets=secrets, configmaps=configmaps)
        sub_path = (mount.get("subPath") or "").strip("/")
        if content is None or not sub_path:
            dirs.append(target)
        for rel, file in (content or {}).items():
            if not sub_path:
                files[target / rel] = file
            elif rel == sub_path:
                files[target] = file
            elif rel.startswith(sub_path + "/"):
                files[target / rel[len(sub_path) + 1 :]] = file
    return files, tuple(dirs), mounts


def volume_files(
    pod: Mapping[str, Any],
    volume: Mapping[str, Any],
    *,
    secrets: Mapping[str, Mapping[str, Any]],
    configmaps: Mapping[str, Mapping[str, Any]],
) -> dict[str, FileContent] | None:
    """The files of a ConfigMap/Secret/projected/downwardAPI volume (relative paths);
    None for a volume that is a directory (emptyDir, and anything else the runner only
    needs to exist)."""
    if "configMap" in volume:
        return _key_files(configmaps, volume["configMap"], "ConfigMap", _configmap_data)
    if "secret" in volume:
        source = dict(volume["secret"])
        source.setdefault("name", source.get("secretName"))
        return _key_files(secrets, source, "Secret", _secret_data)
    if "downwardAPI" in volume:
        return _downward_files(pod, volume["downwardAPI"], volume["downwardAPI"].get("defaultMode"))
    if "projected" in volume:
        projected = volume["projected"]
        default_mode = projected.get("defaultMode")
        files: dict[str, FileContent] = {}
        for source in projected.get("sources") or []:
            if "configMap" in source:
                ref = {"defaultMode": default_mode, **source["configMap"]}
                files.update(_key_files(configmaps, ref, "ConfigMap", _configmap_data))
            elif "secret" in source:
                ref = {"defaultMode": default_mode, **source["secret"]}
                files.update(_key_files(secrets, ref, "Secret", _secret_data))
            elif "downwardAPI" in source:
                files.update(_downward_files(pod, source["downwardAPI"], default_mode))
            # serviceAccountToken: the proxy does not talk to the API server.
        return files
    return None


def _key_files(
    objects: Mapping[str, Mapping[str, Any]],
    ref: Mapping[str, Any],
    kind: str,
    read: Callable[[Mapping[str, Mapping[str, Any]], str, bool], dict[str, bytes] | None],
) -> dict[str, FileContent]:
    optional = bool(ref.get("optional", False))
    data = read(objects, ref["name"], optional)
    if data is None:
        return {}
    default_mode = ref.get("defaultMode")
    mode = 0o644 if default_mode is None else int(default_mode)
    items = ref.get("items")
    if not items:
        return {key: FileContent(value, mode) for key, value in data.items()}
    files = {}
    for item in items:
        if item["key"] not in data:
            if optional:
                continue
            raise PodNotReady(f"couldn't find key {item['key']} in {kind} {ref['name']}")
        item_mode = item.get("mode")
        files[_safe_rel(item["path"])] = FileContent(
            data[item["key"]], mode if item_mode is None else int(item_mode)
        )
    return files


def _downward_files(
    pod: Mapping[str, Any], source: Mapping[str, Any], default_mode: int | None
) -> dict[str, FileContent]:
    files = {}
    for item in source.get("items") or []:
        if "fieldRef" in item:
            value = _field_ref(pod, item["fieldRef"]["fieldPath"])
        else:
            container = _container(pod, item["resourceFieldRef"].get("containerName", ""))
            value = _resource_field_ref(pod, container, item["resourceFieldRef"])
        mode = item.get("mode", default_mode)
        files[_safe_rel(item["path"])] = FileContent(
            value.encode(), 0o644 if mode is None else int(mode)
        )
    return files


def _secret_data(
    secrets: Mapping[str, Mapping[str, Any]], name: str, optional: bool
) -> dict[str, bytes] | None:
    secret = secrets.get(name)
    if secret is None:
        if optional:
            return None
        raise PodNotReady(f'secret "{name}" not found')
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


def _configmap_data(
    configmaps: Mapping[str, Mapping[str, Any]], name: str, optional: bool
) -> dict[str, bytes] | None:
    configmap = configmaps.get(name)
    if configmap is None:
        if optional:
            return None
        raise PodNotReady(f'configmap "{name}" not found')
    data = {k: v.encode() for k, v in (configmap.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (configmap.get("binaryData") or {}).items()})
    return data


def _key_ref(
    objects: Mapping[str, Mapping[str, Any]],
    ref: Mapping[str, Any],
    kind: str,
    read: Callable[[Mapping[str, Mapping[str, Any]], str, bool], dict[str, bytes] | None],
) -> str | None:
    optional = bool(ref.get("optional", False))
    data = read(objects, ref["name"], optional)
    if data is None:
        return None
    if ref["key"] not in data:
        if optional:
            return None
        raise PodNotReady(f"couldn't find key {ref['key']} in {kind} {ref['name']}")
    return data[ref["key"]].decode(errors="replace")


def _field_ref(pod: Mapping[str, Any], path: str) -> str:
    metadata = pod.get("metadata", {})
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if match:
        return str((metadata.get(match[1]) or {}).get(match[2], ""))
    simple = {
        "metadata.name": metadata.get("name"),
        "metadata.namespace": metadata.get("namespace"),
        "metadata.uid": metadata.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": status.get("podIP"),
        "status.hostIP": status.get("hostIP"),
        "status.podIPs": ",".join(p.get("ip", "") for p in status.get("podIPs") or []),
        "status.hostIPs": ",".join(p.get("ip", "") for p in status.get("hostIPs") or []),
    }
    if path not in simple:
        raise UnsupportedPod(f"unsupported fieldRef {path}")
    return str(simple[path] or "")


def _resource_field_ref(
    pod: Mapping[str, Any], container: Mapping[str, Any], ref: Mapping[str, Any]
) -> str:
    if ref.get("containerName"):
        container = _container(pod, ref["containerName"])
    kind, _, resource = ref["resource"].partition(".")
    resources = container.get("resources") or {}
    value = (resources.get(kind) or {}).get(resource)
    if value is None and kind == "requests":
        value = (resources.get("limits") or {}).get(resource)
    if value is None:
        # Without a limit the kubelet reports the node's allocatable amount.
        value = (os.cpu_count() or 1) if resource == "cpu" else 0
    divisor = parse_quantity(ref.get("divisor") or "1")
    return str(math.ceil(parse_quantity(value) / divisor))


def _expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: known names are replaced, $$ escapes, others stay."""
    out: list[str] = []
    i = 0
    while i < len(value):
        char = value[i]
        if char == "$" and i + 1 < len(value):
            following = value[i + 1]
            if following == "$":
                out.append("$")
                i += 2
                continue
            if following == "(":
                end = value.find(")", i + 2)
                if end != -1:
                    name = value[i + 2 : end]
                    out.append(env[name] if name in env else value[i : end + 1])
                    i = end + 1
                    continue
        out.append(char)
        i += 1
    return "".join(out)


def _containers(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list((pod.get("spec") or {}).get("containers") or [])


def _container(pod: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    for container in _containers(pod):
        if container.get("name") == name:
            return container
    raise UnsupportedPod(f"the pod has no container {name!r}")


def _container_port(container: Mapping[str, Any], default: int) -> int:
    ports = container.get("ports") or []
    for port in ports:
        if port.get("name") == "http":
            return int(port["containerPort"])
    return int(ports[0]["containerPort"]) if ports else default


def _get_option(args: list[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg[len(name) + 1 :]
    return None


def _set_option(args: list[str], name: str, value: str) -> list[str]:
    out = []
    found = False
    skip = False
    for i, arg in enumerate(args):
        if skip:
            skip = False
            continue
        if arg == name and i + 1 < len(args):
            out += [name, value]
            skip = found = True
        elif arg.startswith(name + "="):
            out.append(f"{name}={value}")
            found = True
        else:
            out.append(arg)
    return out if found else [*out, name, value]


def _local(pod_dir: Path, mount_path: str) -> Path:
    return pod_dir / _safe_rel(mount_path.lstrip("/")) if mount_path.strip("/") else pod_dir


def _safe_rel(path: str) -> str:
    parts = PurePosixPath(path).parts
    if path.startswith("/") or ".." in parts:
        raise UnsupportedPod(f"path {path!r} escapes its volume")
    return str(PurePosixPath(*parts)) if parts else ""


def _in_pod_dir(path: str, mount_paths: Iterable[str]) -> bool:
    """Whether a container path lies in a mount, or is a directory leading to one (which the
    container runtime creates). Either way it has its place under the pod dir."""
    path = path.rstrip("/")
    if not path.startswith("/"):
        return False
    for mount_path in mount_paths:
        mount_path = mount_path.rstrip("/")
        if path == mount_path or path.startswith(mount_path + "/"):
            return True
        if mount_path.startswith(path + "/"):
            return True
    return False


def _rewrite_path(value: str, pod_dir: Path, mount_paths: Iterable[str]) -> str:
    """A path in a mount, as an absolute path or a ``--flag=PATH`` value, made local."""
    mount_paths = list(mount_paths)
    if _in_pod_dir(value, mount_paths):
        return str(pod_dir / value.lstrip("/"))
    if value.startswith("-") and "=" in value:
        flag, _, path = value.partition("=")
        if _in_pod_dir(path, mount_paths):
            return f"{flag}={pod_dir / path.lstrip('/')}"
    return value


# -- the I/O part ----------------------------------------------------------------------------


def sync_files(
    files: Mapping[Path, FileContent], dirs: Iterable[Path], previous: Iterable[Path] = ()
) -> tuple[set[Path], bool]:
    """Make the disk hold ``files`` and ``dirs``; remove files of ``previous`` no longer
    wanted. Each changed file is replaced atomically, so a reader never sees half a key.
    Returns (the files now written, whether anything changed)."""
    changed = False
    for directory in dirs:
        directory.mkdir(parents=True, exist_ok=True)
    for path, content in files.items():
        try:
            same = path.read_bytes() == content.data and (path.stat().st_mode & 0o777) == (
                content.mode & 0o777
            )
        except OSError:
            same = False
        if same:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(content.data)
        tmp.chmod(content.mode & 0o777)
        os.replace(tmp, path)
        changed = True
    for path in set(previous) - set(files):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            changed = True
    return set(files), changed


_LIVE: weakref.WeakSet[ManagedProcess] = weakref.WeakSet()
_RUNNERS: weakref.WeakSet[ProcessRunner] = weakref.WeakSet()


class ManagedProcess:
    """A started process in its own process group, logging to a file."""

    def __init__(
        self, argv: Iterable[str], *, env: Mapping[str, str], cwd: Path, log_path: Path
    ) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self._stopped = False
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as out:
            out.write(f"--- {time.strftime('%H:%M:%S')} start: {shlex.join(self.argv)}\n".encode())
            out.flush()
            self.popen = subprocess.Popen(
                self.argv,
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        _LIVE.add(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def signal(self, signum: int) -> None:
        # The whole group: uvicorn/gunicorn workers are children of the proxy process.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signum)

    def stop(self, grace: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after ``grace`` seconds; returns the exit code."""
        if self._stopped:
            return self.popen.returncode
        if self.alive:
            self.signal(signal.SIGTERM)
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.popen.wait()
        self.signal(signal.SIGKILL)  # stray workers left in the group
        self._stopped = True
        self.note(f"exited with {self.popen.returncode}")
        _LIVE.discard(self)
        return self.popen.returncode

    def note(self, message: str) -> None:
        with contextlib.suppress(OSError), self.log_path.open("a") as out:
            out.write(f"--- {time.strftime('%H:%M:%S')} {message}\n")

    def tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)

    def __enter__(self) -> ManagedProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def launch_proxy(launch: ProxyLaunch, log_path: Path) -> ManagedProcess:
    """Write the pod's files and start its litellm proxy (does not wait for it to serve)."""
    sync_files(launch.files, launch.dirs)
    return ManagedProcess(launch.argv, env=launch.env, cwd=launch.cwd, log_path=log_path)


def _no_proxy_opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def wait_http_ok(url: str, timeout: float = 60.0, *, process: ManagedProcess | None = None) -> None:
    """Wait until GET ``url`` answers 2xx; fail early if ``process`` exits."""
    opener = _no_proxy_opener()
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        if process is not None and not process.alive:
            raise RuntimeError(
                f"process exited with {process.returncode} before {url} answered:\n{process.tail()}"
            )
        try:
            with opener.open(url, timeout=2) as response:
                if 200 <= response.status < 300:
                    return
                last = f"HTTP {response.status}"
        except Exception as exc:  # any failure means "not yet"
            last = str(exc)
        if time.monotonic() > deadline:
            log = f"\n{process.tail()}" if process is not None else ""
            raise TimeoutError(f"{url} not answering after {timeout}s ({last}){log}")
        time.sleep(0.2)


# -- the runner ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessInfo:
    """A snapshot of what the runner runs for one pod."""

    namespace: str
    pod: str
    uid: str
    component: str  # "proxy" | "ollama" | "redis"
    host: str
    port: int
    state: str  # "waiting" (not started yet) | "running" | "exited" | "terminating"
    pid: int | None  # None until started
    restarts: int
    log_path: Path | None
    pod_dir: Path | None
    reason: str = ""  # why it is waiting or exited
    ready: bool = False  # what its readiness probe says (the pod's Ready condition)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def health_url(self) -> str:
        return self.url + (PROXY_HEALTH_PATH if self.component == "proxy" else "/")


@dataclass
class _Entry:
    namespace: str
    name: str
    uid: str
    component: str
    host: str
    pod: dict[str, Any]
    port: int = 0
    pod_dir: Path | None = None
    log_path: Path | None = None
    process: ManagedProcess | None = None
    ollama: OllamaLaunch | None = None
    netns: str | None = None  # the pod's network namespace (None: a loopback pod IP)
    hosts: str = ""  # the hosts file last written for the pod's namespace
    prober: Prober | None = None  # the container's probes: they decide Ready
    started_at: str = ""  # RFC 3339, for the container status
    last_exit: int | None = None
    last_message: str = ""  # the last exit's termination message
    term_at: float | None = None  # SIGTERM after the preStop hook's sleep
    files: set[Path] = field(default_factory=set)
    restarts: int = 0
    retry_at: float = 0.0
    exit_seen: bool = False
    grace: float = 10.0
    kill_at: float | None = None
    refreshed_at: float = 0.0
    reason: str = ""

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def info(self) -> ProcessInfo:
        if self.kill_at is not None:
            state = "terminating"
        elif self.process is not None:
            state = "running" if self.process.alive else "exited"
        else:
            state = "waiting"
        return ProcessInfo(
            namespace=self.namespace,
            pod=self.name,
            uid=self.uid,
            component=self.component,
            host=self.host,
            port=self.port,
            state=state,
            pid=self.process.pid if self.process is not None else None,
            restarts=self.restarts,
            log_path=self.log_path,
            pod_dir=self.pod_dir,
            reason=self.reason,
            ready=self.ready,
        )

    @property
    def ready(self) -> bool:
        return (
            self.kill_at is None
            and self.prober is not None
            and self.prober.ready
            and self.process is not None
            and self.process.alive
        )


class ProcessRunner:
    """Runs a real process for each llmroute pod that kwok runs in name only.

    Use as a context manager, or start()/stop(). Give it a kubeconfig path or an
    ``api_client`` (kubernetes.client.ApiClient; the runner uses it from its own thread).
    ``namespace`` limits it to one namespace (default: all). ``workdir`` holds
    ``logs/<ns>_<pod>.log``, ``pods/`` (one directory per running pod) and ``volumes/`` (one
    directory per PersistentVolumeClaim an Ollama pod mounts, kept when the pod goes); without
    one a temporary directory is made and removed by stop(). The pod logs go to ``log_dir``
    instead when given, or when $LLMROUTE_RUNNER_LOG_DIR names one (so that logs outlive a
    runner without a workdir, e.g. for a sweep over every log of a test session).

    ``ollama_models``: the models every new Ollama volume holds before its first pod starts
    (the tiny model of localcluster.tinymodel under each name), as if pulled earlier: no
    registry is reachable here, so a pod's pull of any other model fails.
    """

    # Where runners put their pods' logs when no log_dir is given (else: the workdir's logs/).
    LOG_DIR_ENV = "LLMROUTE_RUNNER_LOG_DIR"

    def __init__(
        self,
        kubeconfig: str | Path | None = None,
        *,
        api_client: Any = None,
        namespace: str | None = None,
        workdir: str | Path | None = None,
        poll_interval: float = 0.5,
        refresh_interval: float = 1.0,
        max_grace: float = 10.0,
        ollama_models: Iterable[str] = (),
        litellm: Path | None = None,
        ollama: Path | None = None,
        log_dir: str | Path | None = None,
    ) -> None:
        if (kubeconfig is None) == (api_client is None):
            raise ValueError("give exactly one of kubeconfig and api_client")
        self._kubeconfig = kubeconfig
        self._api_client = api_client
        self._own_client = api_client is None
        self.namespace = namespace
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="llmroute-runner-"))
        self.log_dir = Path(log_dir or os.environ.get(self.LOG_DIR_ENV) or self.workdir / "logs")
        self.poll_interval = poll_interval
        self.refresh_interval = refresh_interval
        self.max_grace = max_grace
        self.ollama_models = tuple(ollama_models)
        self.litellm = litellm or Path(sys.executable).parent / "litellm"
        self.ollama = ollama or tools.binary("ollama")
        self._entries: dict[tuple[str, str], _Entry] = {}  # (uid, pod IP) -> entry
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._core: Any = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> ProcessRunner:
        from kubernetes import client, config

        if self._thread is not None:
            raise RuntimeError("the runner is already started")
        if self._api_client is None:
            self._api_client = config.new_client_from_config(config_file=str(self._kubeconfig))
        self._core = client.CoreV1Api(self._api_client)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "pods").mkdir(parents=True, exist_ok=True)
        self._stopping = False
        # Processes are started from this thread and die with it (PR_SET_PDEATHSIG is tied
        # to the starting thread), so it lives until stop() has ended them.
        self._thread = threading.Thread(target=self._loop, name="llmroute-runner", daemon=True)
        _RUNNERS.add(self)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL after the grace period) and the loop."""
        with self._lock:
            self._stopping = True
            entries = list(self._entries.values())
            for entry in entries:
                self._begin_stop(entry, "runner stopping")
                entry.term_at = None  # no preStop wait: everything stops now
            for entry in entries:
                if entry.process is not None:
                    remaining = max(0.0, (entry.kill_at or 0) - time.monotonic())
                    entry.process.stop(grace=remaining)
                self._finish(entry)
            for entry in entries:
                # Nothing serves these pods any more: they are not Ready (as when a node
                # goes away), so no Service sends them traffic.
                with contextlib.suppress(Exception):
                    self._report_status(entry)
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        _RUNNERS.discard(self)
        if self._own_client and self._api_client is not None:
            with contextlib.suppress(Exception):
                self._api_client.close()
            self._api_client = None
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ProcessRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- queries ---------------------------------------------------------------------------

    def processes(self, namespace: str | None = None) -> list[ProcessInfo]:
        with self._lock:
            infos = [e.info() for e in self._entries.values()]
        return sorted(
            (i for i in infos if namespace is None or i.namespace == namespace),
            key=lambda i: (i.namespace, i.pod),
        )

    def process(self, pod: str, namespace: str | None = None) -> ProcessInfo | None:
        """The live (not terminating) entry of a pod, if any."""
        for info in self.processes(namespace):
            if info.pod == pod and info.state != "terminating":
                return info
        return None

    def wait_serving(
        self, pod: str, timeout: float = 60.0, namespace: str | None = None
    ) -> ProcessInfo:
        """Wait until the pod's process answers its health check (litellm's
        /health/liveliness, Ollama's /); returns its info."""
        opener = _no_proxy_opener()
        deadline = time.monotonic() + timeout
        last = "no process yet"
        while True:
            info = self.process(pod, namespace)
            if info is not None and info.state == "running":
                try:
                    with opener.open(info.health_url, timeout=2) as response:
                        if response.status == 200:
                            return info
                except Exception as exc:  # any failure means "not yet"
                    last = str(exc)
            elif info is not None:
                last = f"{info.state} {info.reason}".strip()
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"pod {pod} not serving after {timeout}s ({last})\n"
                    f"{tail(info.log_path) if info else ''}"
                )
            time.sleep(0.2)

    def wait_stopped(self, pod: str, timeout: float = 30.0, namespace: str | None = None) -> None:
        """Wait until the runner has nothing running for the pod any more."""
        deadline = time.monotonic() + timeout
        while any(i.pod == pod for i in self.processes(namespace)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"pod {pod} still has a process after {timeout}s")
            time.sleep(0.1)

    def volume_dir(self, namespace: str, claim: str) -> Path:
        """The directory standing in for a PersistentVolumeClaim (an Ollama model store)."""
        return self.workdir / "volumes" / f"{namespace}_{claim}"

    def log(self, pod: str, namespace: str | None = None, lines: int = 200) -> str:
        info = next((i for i in self.processes(namespace) if i.pod == pod), None)
        return tail(info.log_path, lines) if info else ""

    # -- the loop --------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stopping:
            try:
                self._sync()
            except Exception:
                log.exception("runner: sync failed; retrying")
            self._wake.wait(self.poll_interval)
            self._wake.clear()

    def _list_pods(self) -> list[dict[str, Any]]:
        kwargs = {
            "label_selector": MANAGED_BY_SELECTOR,
            "_preload_content": False,
            "_request_timeout": (5, 15),
        }
        if self.namespace:
            response = self._core.list_namespaced_pod(self.namespace, **kwargs)
        else:
            response = self._core.list_pod_for_all_namespaces(**kwargs)
        return json.loads(response.data)["items"]

    def _read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        read = (
            self._core.read_namespaced_secret
            if kind == "Secret"
            else self._core.read_namespaced_config_map
        )
        try:
            response = read(name, namespace, _preload_content=False, _request_timeout=(5, 15))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return json.loads(response.data)

    def _references(self, pod: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        namespace = pod["metadata"]["namespace"]
        secret_names, configmap_names = pod_references(pod)
        secrets = {n: o for n in secret_names if (o := self._read("Secret", namespace, n))}
        configmaps = {n: o for n in configmap_names if (o := self._read("ConfigMap", namespace, n))}
        return secrets, configmaps

    def _sync(self) -> None:
        pods = self._list_pods()
        with self._lock:
            if self._stopping:
                return
            now = time.monotonic()
            wanted: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
            for pod in pods:
                component = pod_component(pod)
                if component and pod_is_running(pod):
                    key = (pod["metadata"]["uid"], pod["status"]["podIP"])
                    wanted[key] = (pod, component)

            for key, entry in list(self._entries.items()):
                if entry.kill_at is None and key not in wanted:
                    self._begin_stop(entry, "pod deleted or not running")
                if entry.kill_at is not None:
                    if entry.process is None or not entry.process.alive:
                        self._finish(entry)
                    elif now >= entry.kill_at:
                        entry.process.signal(signal.SIGKILL)
                    elif entry.term_at is not None and now >= entry.term_at:
                        entry.term_at = None
                        entry.process.signal(signal.SIGTERM)

            for key, (pod, component) in wanted.items():
                entry = self._entries.get(key)
                if entry is None:
                    metadata = pod["metadata"]
                    entry = _Entry(
                        namespace=metadata["namespace"],
                        name=metadata["name"],
                        uid=metadata["uid"],
                        component=component,
                        host=key[1],
                        pod=pod,
                    )
                    self._entries[key] = entry
                entry.pod = pod
                self._tend(entry, now)
                self._report_status(entry)
            self._publish_hosts()

    def _publish_hosts(self) -> None:
        """Every pod namespace's hosts file, from the Ready pods of headless Services."""
        text = cluster_hosts(
            ((entry.pod, entry.host) for entry in self._entries.values() if entry.ready),
            base=_node_hosts(),
        )
        for entry in self._entries.values():
            if entry.netns is not None and entry.hosts != text:
                podnet.write_hosts(entry.netns, text)
                entry.hosts = text

    def _tend(self, entry: _Entry, now: float) -> None:
        """Start, restart or refresh one wanted pod's process."""
        if entry.process is not None and not entry.process.alive and not entry.exit_seen:
            entry.exit_seen = True
            entry.restarts += 1
            entry.last_exit = entry.process.returncode
            entry.last_message = self._termination_message(entry)
            failed = entry.prober.failed if entry.prober is not None else ""
            self._stop_prober(entry)
            entry.reason = f"exited with {entry.process.returncode}"
            if failed:
                entry.reason += f" ({failed})"
            entry.process.note(entry.reason)
            # The kubelet's crash back-off, shortened for tests: 1 s, 2 s, 4 s ... 30 s.
            entry.retry_at = now + min(30.0, 2.0 ** (entry.restarts - 1))
            log.warning("runner: %s %s; restarting", entry.label, entry.reason)
        running = entry.process is not None and entry.process.alive
        if running and entry.prober is not None and entry.prober.failed and entry.process:
            # The liveness (or startup) probe gave up: the kubelet kills the container,
            # and the exit above restarts it.
            entry.process.signal(signal.SIGTERM)
        if running:
            if entry.component == "proxy" and now - entry.refreshed_at >= self.refresh_interval:
                self._refresh(entry, now)
            return
        if now < entry.retry_at or self._address_taken(entry):
            return
        try:
            if entry.component == "proxy":
                self._start_proxy(entry, now)
            elif entry.component == "redis":
                self._start_redis(entry, now)
            else:
                self._start_ollama(entry, now)
            entry.reason = ""
            entry.exit_seen = False
        except (PodNotReady, UnsupportedPod, OSError) as exc:
            if str(exc) != entry.reason:
                log.info("runner: %s waits: %s", entry.label, exc)
            entry.reason = str(exc)
            entry.retry_at = now + 1.0

    def _address_taken(self, entry: _Entry) -> bool:
        """Another (terminating) process still holds this pod's IP and port, or the
        namespace of this IP is still the old pod's (kwok reuses IPs)."""
        return any(
            other is not entry
            and other.host == entry.host
            and (
                other.netns is not None
                or (
                    (other.port == entry.port or not entry.port)
                    and other.process is not None
                    and other.process.alive
                )
            )
            for other in self._entries.values()
        )

    def _enter_pod_network(self, entry: _Entry) -> list[str]:
        """The argv prefix that runs a process in the pod's network namespace, made on
        first use; [] for a pod with a loopback IP (no pod network on this machine)."""
        if entry.netns is None and podnet.network_for(entry.host) is not None:
            entry.netns = podnet.add_pod(entry.host)
            # Before the first process: `ip netns exec` mounts the file only if it exists.
            text = cluster_hosts(
                ((e.pod, e.host) for e in self._entries.values() if e.ready), base=_node_hosts()
            )
            podnet.write_hosts(entry.netns, text)
            entry.hosts = text
        return podnet.exec_prefix(entry.netns) if entry.netns else []

    def _pod_dir(self, entry: _Entry) -> Path:
        return self.workdir / "pods" / f"{entry.namespace}_{entry.name}_{entry.uid[:8]}"

    def _log_path(self, entry: _Entry) -> Path:
        return self.log_dir / f"{entry.namespace}_{entry.name}.log"

    def _start_proxy(self, entry: _Entry, now: float) -> None:
        secrets, configmaps = self._references(entry.pod)
        pod_dir = self._pod_dir(entry)
        launch = plan_proxy_launch(
            entry.pod,
            secrets=secrets,
            configmaps=configmaps,
            pod_dir=pod_dir,
            litellm=self.litellm,
        )
        self._write_pod_files(entry, launch, pod_dir)
        entry.refreshed_at = now
        container = _container(entry.pod, PROXY_CONTAINER)
        readiness = parse_probe(
            container,
            "readinessProbe",
            host=entry.host,
            rewrite=lambda v: _rewrite_path(v, pod_dir, launch.mounts),
        )
        self._spawn(entry, launch, "litellm", container, cwd=launch.cwd, readiness=readiness)

    def _refresh(self, entry: _Entry, now: float) -> None:
        """Rewrite Secret/ConfigMap volume files that changed (env stays as started)."""
        entry.refreshed_at = now
        try:
            secrets, configmaps = self._references(entry.pod)
            container = _container(entry.pod, PROXY_CONTAINER)
            files, dirs, _ = mount_layout(
                entry.pod,
                container,
                secrets=secrets,
                configmaps=configmaps,
                pod_dir=entry.pod_dir or self._pod_dir(entry),
            )
        except (PodNotReady, UnsupportedPod) as exc:
            # The kubelet keeps the last content while a source is missing.
            log.debug("runner: %s keeps its volumes: %s", entry.label, exc)
            return
        entry.files, changed = sync_files(files, dirs, entry.files)
        if changed:
            log.info("runner: %s volumes updated", entry.label)
            if entry.process is not None:
                entry.process.note("volumes updated from their Secrets/ConfigMaps")

    def _start_ollama(self, entry: _Entry, now: float) -> None:
        secrets, configmaps = self._references(entry.pod)
        pod_dir = self._pod_dir(entry)
        launch = plan_ollama_launch(
            entry.pod,
            pod_dir=pod_dir,
            volumes_dir=self.workdir / "volumes",
            ollama=self.ollama,
            secrets=secrets,
            configmaps=configmaps,
        )
        if not os.access(self.ollama, os.X_OK):
            raise PodNotReady(f"no ollama binary at {self.ollama}: {tools.BUILD_COMMAND}")
        for claim, volume in launch.claims.items():
            if not volume.exists():
                # A new volume: provisioned with the models every store starts with.
                tmp = volume.with_name(f".{volume.name}.new")
                shutil.rmtree(tmp, ignore_errors=True)
                tinymodel.create_models(tmp, self.ollama_models, ollama=self.ollama)
                tmp.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, volume)
                log.info(
                    "runner: volume %s/%s holds %s", entry.namespace, claim, self.ollama_models
                )
        entry.ollama = launch
        self._write_pod_files(entry, launch, pod_dir)
        # A fresh termination message for each run of the container, as the kubelet makes.
        launch.termination_log.write_bytes(b"")
        container = _container(entry.pod, OLLAMA_CONTAINER)
        readiness = parse_probe(container, "readinessProbe", host=entry.host)
        if readiness is not None and launch.readiness_argv is not None:
            # The exec probe's command with its container paths made local.
            readiness = dataclasses.replace(readiness, command=launch.readiness_argv)
        self._spawn(entry, launch, "ollama", container, cwd=pod_dir, readiness=readiness)

    def _start_redis(self, entry: _Entry, now: float) -> None:
        secrets, configmaps = self._references(entry.pod)
        pod_dir = self._pod_dir(entry)
        launch = plan_redis_launch(
            entry.pod,
            pod_dir=pod_dir,
            volumes_dir=self.workdir / "volumes",
            secrets=secrets,
            configmaps=configmaps,
        )
        if shutil.which("redis-server", path=CONTAINER_PATH) is None:
            raise PodNotReady(f"no redis-server on {CONTAINER_PATH}: {tools.BUILD_COMMAND}")
        self._write_pod_files(entry, launch, pod_dir)
        container = _container(entry.pod, REDIS_CONTAINER)
        readiness = parse_probe(container, "readinessProbe", host=entry.host)
        self._spawn(entry, launch, "redis-server", container, cwd=pod_dir, readiness=readiness)

    def _write_pod_files(self, entry: _Entry, launch: _Launch, pod_dir: Path) -> None:
        """The pod's volumes written to its directory (what a container start mounts)."""
        entry.port = launch.port
        entry.pod_dir = pod_dir
        entry.log_path = self._log_path(entry)
        entry.files, _ = sync_files(launch.files, launch.dirs, entry.files)

    def _spawn(
        self,
        entry: _Entry,
        launch: _Launch,
        program: str,
        container: dict[str, Any],
        *,
        cwd: Path,
        readiness: Probe | None,
    ) -> None:
        """Starts the container's process in the pod's network, in place of an exited one,
        and probes it as the container declares (readiness as the caller made it local)."""
        if entry.process is not None:
            entry.process.stop(grace=0)  # the exited one: reap it and any stray children
        entry.process = ManagedProcess(
            [*self._enter_pod_network(entry), *launch.argv],
            env=launch.env,
            cwd=cwd,
            log_path=entry.log_path,
        )
        entry.grace = min(launch.grace_seconds, self.max_grace)
        log.info("runner: %s runs %s at %s (pid %d)", entry.label, program, launch.url, entry.pid)
        self._start_prober(
            entry,
            startup=parse_probe(container, "startupProbe", host=entry.host),
            readiness=readiness,
            liveness=parse_probe(container, "livenessProbe", host=entry.host),
        )

    @staticmethod
    def _termination_message(entry: _Entry) -> str:
        """What the exited container wrote to its termination log (with
        FallbackToLogsOnError, the tail of its log after a failure), as the kubelet reads it."""
        launch, process = entry.ollama, entry.process
        if entry.component != "ollama" or launch is None or process is None:
            return ""
        message = ""
        with contextlib.suppress(OSError):
            message = launch.termination_log.read_text(errors="replace").strip()
        if not message and launch.fallback_to_logs and process.returncode and entry.log_path:
            lines = tail(entry.log_path, 20).splitlines()
            message = "\n".join(line for line in lines if not line.startswith("--- "))
        return message[-4096:]

    def _start_prober(
        self,
        entry: _Entry,
        *,
        startup: Probe | None,
        readiness: Probe | None,
        liveness: Probe | None,
    ) -> None:
        self._stop_prober(entry)
        entry.started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        entry.prober = Prober(
            entry.label,
            startup=startup,
            readiness=readiness,
            liveness=liveness,
            exec_prefix=podnet.exec_prefix(entry.netns) if entry.netns else (),
            on_change=self._wake.set,
            on_failure=lambda reason: self._wake.set(),
        ).start()

    @staticmethod
    def _stop_prober(entry: _Entry) -> None:
        if entry.prober is not None:
            entry.prober.stop()
            entry.prober = None

    def _report_status(self, entry: _Entry) -> None:
        """Write the pod's Ready condition and container status when they changed, as
        the kubelet does: the Deployment controller and EndpointSlices go by them."""
        body = pod_status_patch(
            entry.pod,
            container=COMPONENT_CONTAINERS[entry.component],
            ready=entry.ready,
            restarts=entry.restarts,
            running=entry.info().state == "running",
            started_at=entry.started_at,
            last_exit=entry.last_exit,
            last_message=entry.last_message,
            waiting_reason=entry.reason,
        )
        if body is None:
            return
        from kubernetes.client.exceptions import ApiException

        try:
            self._patch_pod_status(entry.namespace, entry.name, body)
        except ApiException as exc:
            if exc.status not in (404, 409, 422):
                raise
        else:
            # What the API holds now; the next list brings the rest.
            entry.pod.setdefault("status", {}).update(body["status"])

    def _patch_pod_status(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        self._core.patch_namespaced_pod_status(name, namespace, body, _request_timeout=(5, 15))

    def _begin_stop(self, entry: _Entry, reason: str) -> None:
        entry.kill_at = time.monotonic() + min(entry.grace, self.max_grace)
        self._stop_prober(entry)
        pre_stop = pre_stop_sleep(entry.pod, entry.component)
        if entry.process is not None and entry.process.alive and pre_stop:
            # The preStop hook's sleep: the process serves on while Services let go of it.
            log.info("runner: %s stopping in %ss (%s)", entry.label, pre_stop, reason)
            entry.process.note(f"stopping after the preStop sleep: {reason}")
            entry.term_at = time.monotonic() + pre_stop
            entry.kill_at += pre_stop
        elif entry.process is not None and entry.process.alive:
            log.info("runner: %s stopping (%s)", entry.label, reason)
            entry.process.note(f"stopping: {reason}")
            entry.process.signal(signal.SIGTERM)

    def _finish(self, entry: _Entry) -> None:
        if entry.process is not None:
            entry.process.stop(grace=0)  # reaps it and kills stray group members
        if entry.pod_dir is not None:
            shutil.rmtree(entry.pod_dir, ignore_errors=True)
        if entry.netns is not None:
            podnet.remove_pod(entry.host)
            entry.netns = None
        self._entries.pop((entry.uid, entry.host), None)


@atexit.register
def _stop_everything() -> None:
    for runner in list(_RUNNERS):
        with contextlib.suppress(Exception):
            runner.stop()
    for process in list(_LIVE):
        with contextlib.suppress(Exception):
            process.stop(grace=3)


# -- command line ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localcluster.runner",
        description="Run the real litellm proxy and the real Ollama for llmroute's pods.",
    )
    parser.add_argument("--kubeconfig", required=True, type=Path)
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--namespace", help="only this namespace (default: all)")
    parser.add_argument(
        "--ollama-models",
        default="",
        help="comma-separated models every new Ollama volume holds (the tiny local model)",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    runner = ProcessRunner(
        args.kubeconfig,
        namespace=args.namespace,
        workdir=args.workdir,
        ollama_models=[m.strip() for m in args.ollama_models.split(",") if m.strip()],
    )
    with runner:
        log.info("runner: watching pods %s; logs in %s", MANAGED_BY_SELECTOR, args.workdir / "logs")
        while not done.wait(1):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
