"""The operator at N routes, beside its floor.

For each N, against a fresh local control plane (kube-scheduler + kwok: Deployments become
Available), with `llmroute run` as its own process and its own user:

1. from empty: N LLMRoutes created at once (8 client threads). Per route, the time from its
   create request to the first watch event in which status.observedGeneration equals
   metadata.generation (a watch on llmroutes records it, nothing polls); for the set, the
   time until every route has caught up and every child exists. Then until every route is
   Ready (its proxy Deployment Available).
2. steady state: with the N routes in place, routes are changed one at a time (--probes);
   the same apply -> observedGeneration latency, now without a queue in front of it.
3. idle: the operator's API requests during --idle seconds, by verb, from the apiserver's
   audit log (the operator has a user of its own); every client's requests from the
   apiserver's apiserver_request_total alongside.
4. restart: the operator stopped and started again with nothing changed (until it has
   resumed every route), and with every route's spec changed while it was down (until all
   have caught up), each timed from the new process's start.
5. the floor, in a namespace of its own while no operator runs, before the operator's phases
   (that namespace is deleted before the operator starts) and after them: one plain client
   (the kubernetes client, server-side apply, one request at a time) creating each route,
   applying the objects render_route() returns for it (with ownerReferences), creating its
   master key Secret and writing its status; then the same after a change of every route's
   spec. The ratios divide by the mean of the two floors.

The operator's RSS (VmRSS, VmHWM from /proc/<pid>/status) is sampled throughout.

    .venv/bin/python -m benchmarks.operator_scale --routes 100,500,1000 --idle 300
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import REPO_ROOT
from benchmarks.cluster import BenchCluster, diff_totals
from benchmarks.common import (
    cpu_seconds,
    load_average,
    machine,
    now_iso,
    ratio,
    rss_kib,
    summary_ms,
    write_results,
)
from benchmarks.profiling import Sampler, share, summarize
from llmroute import kube
from llmroute.api import GROUP, ROUTE_PLURAL, VERSION
from llmroute.api.route import parse_route
from llmroute.render import render_route
from llmroute.render.names import MASTER_KEY_SECRET_KEY
from localcluster import free_port

NAMESPACE = "bench"
SECRET = "provider-keys"
CREATE_THREADS = 8


# -- routes ------------------------------------------------------------------------------------


def route_name(index: int) -> str:
    return f"r{index:05d}"


def route_spec(index: int, revision: int = 0) -> dict[str, Any]:
    """A simple valid route: one or two openai targets, keys from one Secret.

    Model names differ per route, so no two routes render the same LiteLLM config (nothing is
    shared through the operator's config-check cache). `revision` changes the spec.
    """
    targets = [
        {
            "provider": "openai",
            "model": "gpt-4o-mini",
            "apiKeySecretRef": {"name": SECRET, "key": "openai"},
        }
    ]
    if index % 2:
        targets.append(
            {
                "provider": "openai",
                "model": "gpt-4o",
                "apiKeySecretRef": {"name": SECRET, "key": "openai"},
            }
        )
    return {
        "models": [{"name": f"chat-{index}", "targets": targets}],
        "router": {"numRetries": 2 + revision % 2},
    }


def route_object(namespace: str, index: int, revision: int = 0) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LLMRoute",
        "metadata": {"name": route_name(index), "namespace": namespace},
        "spec": route_spec(index, revision),
    }


# -- watching routes ---------------------------------------------------------------------------


@dataclass
class RouteState:
    generation: int = 0
    observed: int | None = None
    ready: bool = False
    # generation -> monotonic time of the first event that showed it observed
    caught_at: dict[int, float] = field(default_factory=dict)


class RouteWatch:
    """Follows every LLMRoute of a namespace with one watch; no per-object polling."""

    def __init__(self, api, namespace: str) -> None:
        from kubernetes import client

        self._custom = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.routes: dict[str, RouteState] = {}
        self.last_event = time.monotonic()
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="route-watch", daemon=True)

    def start(self) -> None:
        listing = self._custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, ROUTE_PLURAL
        )
        for obj in listing["items"]:
            self._record(obj)
        self._resource_version = listing["metadata"]["resourceVersion"]
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        while not self._stop.is_set():
            stream = watch.Watch()
            try:
                for event in stream.stream(
                    self._custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    ROUTE_PLURAL,
                    resource_version=self._resource_version,
                    timeout_seconds=60,
                    allow_watch_bookmarks=True,
                ):
                    obj = event["object"]
                    self._resource_version = obj["metadata"]["resourceVersion"]
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._record(obj)
                    if self._stop.is_set():
                        break
            except ApiException as error:
                if error.status == 410:  # expired: start over from a fresh list
                    listing = self._custom.list_namespaced_custom_object(
                        GROUP, VERSION, self.namespace, ROUTE_PLURAL
                    )
                    for obj in listing["items"]:
                        self._record(obj)
                    self._resource_version = listing["metadata"]["resourceVersion"]
                else:
                    time.sleep(0.5)
            except Exception:  # a dropped connection: watch again from where it was
                time.sleep(0.2)

    def _record(self, obj: dict[str, Any]) -> None:
        now = time.monotonic()
        meta, status = obj["metadata"], obj.get("status") or {}
        with self._changed:
            state = self.routes.setdefault(meta["name"], RouteState())
            state.generation = meta.get("generation", 0)
            state.observed = status.get("observedGeneration")
            state.ready = any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in status.get("conditions") or []
            )
            if state.observed is not None and state.observed == state.generation:
                state.caught_at.setdefault(state.generation, now)
            self.last_event = now
            self._changed.notify_all()

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(predicate, timeout)

    def caught_up(self, sent: Sent) -> bool:
        """Every route of `sent` has shown the generation its request made as observed."""
        return all(
            (s := self.routes.get(name)) is not None and generation in s.caught_at
            for name, (_, generation) in sent.items()
        )

    def all_ready(self, names: list[str]) -> bool:
        return all((s := self.routes.get(n)) is not None and s.ready for n in names)

    def wait_quiet(self, seconds: float, timeout: float) -> bool:
        """Until no route changed for `seconds` (the operator has finished writing)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if time.monotonic() - self.last_event >= seconds:
                return True
            time.sleep(0.2)
        return False


# -- the operator process ----------------------------------------------------------------------


class Operator:
    """`llmroute run` in a process of its own, as its own user."""

    def __init__(self, kubeconfig: Path, log_path: Path, launcher_args: list[str]) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        # Through benchmarks.operator_launcher when settings or patches are asked for.
        self.launcher_args = launcher_args
        self.popen: subprocess.Popen | None = None
        self.started_at = 0.0
        self.live_at = 0.0

    def start(self) -> float:
        """Start it and wait until its liveness endpoint answers; returns the start time."""
        port = free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.started_at = time.monotonic()
            command = ["run", "--kubeconfig", str(self.kubeconfig)]
            command += ["--liveness", f"http://127.0.0.1:{port}/healthz"]
            prefix = [sys.executable, "-m"]
            if self.launcher_args:
                prefix += ["benchmarks.operator_launcher", *self.launcher_args, "--"]
            else:
                prefix += ["llmroute"]
            self.popen = subprocess.Popen(
                prefix + command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=REPO_ROOT,
            )
        deadline = time.monotonic() + 120
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while True:
            if self.popen.poll() is not None:
                raise RuntimeError(f"the operator exited:\n{self.log_tail()}")
            try:
                with opener.open(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    self.live_at = time.monotonic()
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the operator is not live:\n{self.log_tail()}") from None
                time.sleep(0.1)
        return self.started_at

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def cpu_s(self) -> float:
        return cpu_seconds(self.pid) or 0.0

    def memory(self) -> dict[str, float | None]:
        values = rss_kib(self.pid)
        return {
            "rss_mib": round(values["VmRSS"] / 1024, 1) if "VmRSS" in values else None,
            "peak_rss_mib": round(values["VmHWM"] / 1024, 1) if "VmHWM" in values else None,
        }

    def stop(self) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        self.popen = None

    def log_since_start(self) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._log_offset)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def log_counts(self) -> dict[str, int]:
        """Error and warning lines this process has logged (kopf retries show up here)."""
        lines = self.log_since_start().splitlines()
        return {
            "errors": sum(" ERROR " in line for line in lines),
            "warnings": sum(" WARNING " in line for line in lines),
        }

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_since_start().splitlines()[-lines:])


# -- phases ------------------------------------------------------------------------------------


def create_namespace(api, name: str) -> None:
    from kubernetes import client

    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": name}})
    core.create_namespaced_secret(
        name,
        {
            "metadata": {"name": SECRET},
            "data": {"openai": base64.b64encode(b"sk-bench-not-used").decode()},
        },
    )


def count_children(api, namespace: str) -> dict[str, int]:
    from kubernetes import client

    selector = "app.kubernetes.io/managed-by=llmroute"
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    networking = client.NetworkingV1Api(api)
    return {
        "ConfigMap": len(core.list_namespaced_config_map(namespace, label_selector=selector).items),
        "Deployment": len(
            apps.list_namespaced_deployment(namespace, label_selector=selector).items
        ),
        "Service": len(core.list_namespaced_service(namespace, label_selector=selector).items),
        "NetworkPolicy": len(
            networking.list_namespaced_network_policy(namespace, label_selector=selector).items
        ),
        "Secret": len(core.list_namespaced_secret(namespace, label_selector=selector).items),
    }


def wait_children(api, namespace: str, routes: int, timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        counts = count_children(api, namespace)
        if all(n >= routes for n in counts.values()) or time.monotonic() > deadline:
            return counts
        time.sleep(0.5)


# route name -> (monotonic time of the request, the generation it made)
Sent = dict[str, tuple[float, int]]


def create_routes(api, namespace: str, indices: list[int]) -> Sent:
    """Create the routes from CREATE_THREADS threads."""
    from kubernetes import client

    custom = client.CustomObjectsApi(api)
    sent: Sent = {}

    def create(index: int) -> None:
        at = time.monotonic()
        created = custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, ROUTE_PLURAL, route_object(namespace, index)
        )
        sent[route_name(index)] = (at, created["metadata"]["generation"])

    with ThreadPoolExecutor(CREATE_THREADS) as pool:
        list(pool.map(create, indices))
    return sent


def change_routes(api, namespace: str, indices: list[int], revision: int) -> Sent:
    from kubernetes import client

    custom = client.CustomObjectsApi(api)
    sent: Sent = {}

    def change(index: int) -> None:
        at = time.monotonic()
        changed = custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            ROUTE_PLURAL,
            route_name(index),
            {"spec": {"router": route_spec(index, revision)["router"]}},
        )
        sent[route_name(index)] = (at, changed["metadata"]["generation"])

    with ThreadPoolExecutor(CREATE_THREADS) as pool:
        list(pool.map(change, indices))
    return sent


def latencies(watch: RouteWatch, sent: Sent) -> list[float]:
    """Per route, from its request to the first event showing that generation observed."""
    out = []
    for name, (at, generation) in sent.items():
        state = watch.routes.get(name)
        caught = state.caught_at.get(generation) if state is not None else None
        if caught is not None:
            out.append(max(0.0, caught - at))
    return out


def _wall(monotonic: float) -> float:
    """A monotonic time as wall-clock seconds (the audit log's clock)."""
    return time.time() - (time.monotonic() - monotonic)


# -- the floor ---------------------------------------------------------------------------------


def floor_reconcile(api, route: dict[str, Any], *, create_secret: bool) -> None:
    """What the operator's writes amount to for one route, from one plain client."""
    from kubernetes import client

    meta = route["metadata"]
    name = f"{meta['name']}-master-key"
    rendered = render_route(parse_route(route), master_key_secret=name)
    owner = kube.owner_reference(route)
    for obj in rendered.objects:
        kube.apply(
            api,
            {**obj, "metadata": {**obj["metadata"], "ownerReferences": [owner]}},
        )
    if create_secret and rendered.generated_secret is not None:
        secret = rendered.generated_secret
        secret = {
            **secret,
            "metadata": {**secret["metadata"], "ownerReferences": [owner]},
            "stringData": {MASTER_KEY_SECRET_KEY: f"sk-{secrets.token_urlsafe(32)}"},
        }
        kube.create(api, secret)
    client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        meta["namespace"],
        ROUTE_PLURAL,
        meta["name"],
        {
            "status": {
                "observedGeneration": meta["generation"],
                "endpoint": rendered.endpoint,
                "models": rendered.models,
                "configHash": rendered.config_hash,
                "masterKeySecret": name,
            }
        },
    )


def run_floor(api, routes: int, namespace: str) -> dict[str, Any]:
    from kubernetes import client

    custom = client.CustomObjectsApi(api)
    create_namespace(api, namespace)
    indices = list(range(routes))
    per_route = []
    load_before = load_average()
    started = time.monotonic()
    for index in indices:
        began = time.monotonic()
        route = custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, ROUTE_PLURAL, route_object(namespace, index)
        )
        floor_reconcile(api, route, create_secret=True)
        per_route.append(time.monotonic() - began)
    from_empty = time.monotonic() - started
    children = count_children(api, namespace)
    load_after = load_average()

    # The change of every spec is not timed (the operator's is made while it is down).
    changed = []
    for index in indices:
        changed.append(
            custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                ROUTE_PLURAL,
                route_name(index),
                {"spec": {"router": route_spec(index, 1)["router"]}},
            )
        )
    change_load_before = load_average()
    started = time.monotonic()
    for route in changed:
        floor_reconcile(api, route, create_secret=False)
    after_change = time.monotonic() - started
    return {
        "from_empty_s": round(from_empty, 2),
        "per_route": summary_ms(per_route),
        "children": children,
        "after_change_s": round(after_change, 2),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "change_load_average_before": change_load_before,
        "load_average_end": load_average(),
    }


def delete_namespace(api, name: str, timeout: float) -> float:
    """Delete a namespace and wait until it is gone; the seconds that took."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api)
    started = time.monotonic()
    core.delete_namespace(name, propagation_policy="Background")
    while time.monotonic() - started < timeout:
        try:
            core.read_namespace(name)
        except ApiException as error:
            if error.status == 404:
                break
            raise
        time.sleep(1)
    return round(time.monotonic() - started, 1)


def floors(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The floor measured before and after the operator's phases, and their means."""

    def mean(key: str) -> float:
        return round((before[key] + after[key]) / 2, 2)

    return {
        "from_empty_s": mean("from_empty_s"),
        "after_change_s": mean("after_change_s"),
        "children": after["children"],
        "before_operator": before,
        "after_operator": after,
        "load_average_before": before["load_average_before"],
        "load_average_after": after["load_average_end"],
    }


# -- one size ----------------------------------------------------------------------------------


def run_size(routes: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"routes": routes, "load_average_start": load_average()}
    names = [route_name(i) for i in range(routes)]
    timeout = args.timeout
    workdir.mkdir(parents=True, exist_ok=True)
    # A fresh control plane each time (a directory of an earlier run would hold its etcd data).
    cluster_dir = Path(tempfile.mkdtemp(prefix=f"cluster-{routes}-", dir=workdir))
    cluster = BenchCluster.for_pods(2 * routes, workdir=cluster_dir)
    operator: Operator | None = None
    sampler: Sampler | None = None
    watch: RouteWatch | None = None
    try:
        started = time.monotonic()
        cluster.start()
        result["cluster_start_s"] = round(time.monotonic() - started, 1)
        api = cluster.api_client()
        api.configuration.connection_pool_maxsize = CREATE_THREADS * 2

        # 0. the floor, before the operator runs (its namespace is gone before it starts:
        # the operator watches the whole cluster). It is measured again at the end; the
        # ratios use the mean of the two, so a change of the machine's load in between
        # weighs on both sides.
        floor_before = run_floor(api, routes, "floor-before")
        result["floor_namespace_deleted_s"] = delete_namespace(api, "floor-before", timeout)
        print(
            f"[{routes}] floor (before): {floor_before['from_empty_s']} s, "
            f"after change {floor_before['after_change_s']} s"
        )
        create_namespace(api, NAMESPACE)
        watch = RouteWatch(api, NAMESPACE)
        watch.start()

        operator = Operator(
            cluster.operator_kubeconfig,
            Path(cluster_dir) / "operator.log",
            [f"--set={s}" for s in args.operator_set]
            + [f"--patch={p}" for p in args.operator_patch],
        )
        operator.start()
        result["operator_start_s"] = round(time.monotonic() - operator.started_at, 2)
        result["memory_idle_before_routes"] = operator.memory()
        if args.profile:
            sampler = Sampler(operator.pid, workdir / f"profile-{routes}-from-empty.txt")
            result["profiled"] = sampler.start()

        # 1. from empty
        load_before = load_average()
        cpu_before = operator.cpu_s()
        sent = create_routes(api, NAMESPACE, list(range(routes)))
        first = min(at for at, _ in sent.values())
        converged = watch.wait(lambda: watch.caught_up(sent), timeout)
        caught = time.monotonic()
        children = wait_children(api, NAMESPACE, routes, timeout=60)
        done = time.monotonic()
        if sampler is not None:
            sampler.stop()
            result["profile_from_empty"] = profile_report(sampler.out)
        result["from_empty"] = {
            "converged": converged,
            "create_requests_s": round(max(at for at, _ in sent.values()) - first, 2),
            "all_observed_s": round(caught - first, 2),
            "converged_s": round(done - first, 2),
            "apply_to_observed": summary_ms(latencies(watch, sent)),
            "children": children,
            "operator_requests": cluster.audit.counts(_wall(first), _wall(done)),
            "operator_log": operator.log_counts(),
            "operator_cpu_s": round(operator.cpu_s() - cpu_before, 1),
            "memory": operator.memory(),
            "load_average_before": load_before,
            "load_average_after": load_average(),
        }
        print(f"[{routes}] from empty: {result['from_empty']['converged_s']} s")

        ready = watch.wait(lambda: watch.all_ready(names), args.settle_timeout)
        result["from_empty"]["all_ready_s"] = round(time.monotonic() - first, 2) if ready else None
        watch.wait_quiet(args.quiet, 120)

        # 2. steady state: one change at a time
        probe_latencies = []
        load_before = load_average()
        for k in range(args.probes):
            index = (k * max(1, routes // max(1, args.probes))) % routes
            sent_one = change_routes(api, NAMESPACE, [index], 1)
            watch.wait(lambda sent_one=sent_one: watch.caught_up(sent_one), 60)
            probe_latencies.extend(latencies(watch, sent_one))
            # Put it back, so every route is at revision 0 again (not timed).
            back = change_routes(api, NAMESPACE, [index], 0)
            watch.wait(lambda back=back: watch.caught_up(back), 60)
            time.sleep(0.2)
        result["steady_state"] = {
            "probes": args.probes,
            "apply_to_observed": summary_ms(probe_latencies),
            "load_average_before": load_before,
            "load_average_after": load_average(),
        }
        print(
            f"[{routes}] steady: p99 {result['steady_state']['apply_to_observed']['p99_ms']} ms",
            flush=True,
        )

        # 3. idle
        watch.wait(lambda: watch.all_ready(names), args.settle_timeout)
        watch.wait_quiet(args.quiet, 120)
        load_before = load_average()
        totals_before = cluster.request_totals()
        cpu_before = operator.cpu_s()
        idle_start = time.time()
        time.sleep(args.idle)
        idle_end = time.time()
        totals_after = cluster.request_totals()
        result["idle"] = {
            "seconds": args.idle,
            "operator_requests": cluster.audit.counts(idle_start, idle_end),
            "all_clients_by_verb": diff_totals(totals_before, totals_after),
            "operator_cpu_s": round(operator.cpu_s() - cpu_before, 2),
            "memory": operator.memory(),
            "load_average_before": load_before,
            "load_average_after": load_average(),
        }
        print(f"[{routes}] idle: {result['idle']['operator_requests']}", flush=True)

        # 4a. restart, nothing changed
        result["memory_first_process"] = operator.memory()
        operator.stop()
        load_before = load_average()
        start_time = time.monotonic()
        operator.start()
        resumed = _wait_for(
            lambda: operator.log_since_start().count("Resuming is processed") >= routes, timeout
        )
        done = time.monotonic()
        watch.wait_quiet(args.quiet, 120)
        result["restart_unchanged"] = {
            "resumed": resumed,
            "live_s": round(operator.live_at - start_time, 2),
            "all_resumed_s": round(done - start_time, 2),
            "operator_cpu_s": round(operator.cpu_s(), 1),
            "operator_requests": cluster.audit.counts(_wall(start_time), time.time()),
            "operator_log": operator.log_counts(),
            "memory": operator.memory(),
            "load_average_before": load_before,
            "load_average_after": load_average(),
        }
        print(f"[{routes}] restart: {result['restart_unchanged']['all_resumed_s']} s", flush=True)

        # 4b. restart after every spec changed while the operator was down
        operator.stop()
        changed = change_routes(api, NAMESPACE, list(range(routes)), 1)
        load_before = load_average()
        start_time = time.monotonic()
        operator.start()
        if args.profile:
            sampler = Sampler(operator.pid, workdir / f"profile-{routes}-restart.txt")
            sampler.start()
        converged = watch.wait(lambda: watch.caught_up(changed), timeout)
        done = time.monotonic()
        if sampler is not None:
            sampler.stop()
            result["profile_restart_changed"] = profile_report(sampler.out)
        result["restart_changed"] = {
            "converged": converged,
            "live_s": round(operator.live_at - start_time, 2),
            "converged_s": round(done - start_time, 2),
            "operator_cpu_s": round(operator.cpu_s(), 1),
            "operator_requests": cluster.audit.counts(_wall(start_time), _wall(done)),
            "operator_log": operator.log_counts(),
            "memory": operator.memory(),
            "load_average_before": load_before,
            "load_average_after": load_average(),
        }
        print(
            f"[{routes}] restart changed: {result['restart_changed']['converged_s']} s", flush=True
        )
        result["memory_second_process"] = operator.memory()
        operator.stop()
        operator = None

        # 5. the floor again, after the operator's phases
        result["floor"] = floors(floor_before, run_floor(api, routes, "floor-after"))
        print(
            f"[{routes}] floor: {result['floor']['from_empty_s']} s, "
            f"after change {result['floor']['after_change_s']} s"
        )
        result["ratios"] = {
            "from_empty_over_floor": ratio(
                result["from_empty"]["converged_s"], result["floor"]["from_empty_s"]
            ),
            "restart_changed_over_floor": ratio(
                result["restart_changed"]["converged_s"], result["floor"]["after_change_s"]
            ),
        }
        result["load_average_end"] = load_average()
        return result
    finally:
        if sampler is not None:
            sampler.stop()
        if watch is not None:
            watch.stop()
        if operator is not None:
            operator.stop()
        cluster.stop()


def _wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


# Where the operator's time goes: these patterns, as shares of its samples.
PROFILE_BUCKETS = {
    "check_litellm_config (litellm Router per new config)": r"check_litellm_config",
    "import litellm": r"_import_litellm",
    "render_route": r"render_route",
    "server-side apply of children": r"kube\.py.*\bapply\b|\bapply \(llmroute/kube",
    "status writes": r"_write_status",
    "quota lookups": r"quota_effects_for_route",
    "secret checks": r"_missing_secrets",
    "kopf event processing": r"kopf/_core",
}


def profile_report(path: Path) -> dict[str, Any]:
    report = summarize(path, top=30)
    report["buckets"] = {name: share(path, pattern) for name, pattern in PROFILE_BUCKETS.items()}
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.operator_scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--routes", default="100,500", help="comma-separated sizes")
    parser.add_argument("--idle", type=float, default=300.0, help="idle window (s)")
    parser.add_argument("--probes", type=int, default=30, help="steady-state single changes")
    parser.add_argument("--timeout", type=float, default=1800.0, help="per phase (s)")
    parser.add_argument(
        "--settle-timeout", type=float, default=900.0, help="until every route is Ready (s)"
    )
    parser.add_argument(
        "--quiet",
        type=float,
        default=5.0,
        help="seconds without a route change that count as settled (before the idle window)",
    )
    parser.add_argument(
        "--operator-set",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="a kopf setting for the operator, e.g. execution.max_workers=16 (repeatable)",
    )
    parser.add_argument(
        "--operator-patch",
        action="append",
        default=[],
        metavar="NAME",
        help="approximate a proposed change (see benchmarks.operator_launcher; repeatable)",
    )
    parser.add_argument("--profile", action="store_true", help="sample the operator with py-spy")
    parser.add_argument("--out", type=Path, help="result file (default: benchmarks/results/)")
    parser.add_argument("--workdir", type=Path, help="keep clusters' and operator's files here")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sizes = [int(n) for n in args.routes.split(",")]
    results: dict[str, Any] = {
        "benchmark": "operator",
        "started": now_iso(),
        "machine": machine(),
        "load_average_start": load_average(),
        "settings": {
            "routes": sizes,
            "idle_s": args.idle,
            "probes": args.probes,
            "quiet_s": args.quiet,
            "create_threads": CREATE_THREADS,
            "profile": args.profile,
            "operator_settings": args.operator_set,
            "operator_patches": args.operator_patch,
        },
        "sizes": [],
    }
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="llmroute-bench-operator-"))
    out = args.out
    for routes in sizes:
        results["sizes"].append(run_size(routes, args, workdir))
        # Written after every size: a long run keeps what it has measured.
        out = write_results(results, out, "operator")
    results["load_average_end"] = load_average()
    results["finished"] = now_iso()
    out = write_results(results, out, "operator")
    print(json.dumps([s.get("ratios") for s in results["sizes"]], indent=2))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
