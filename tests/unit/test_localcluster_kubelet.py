"""The local cluster's kubelet parts without a cluster: pod addresses, kwok's stages, the
pod status the runner writes, and probes run as the kubelet runs them."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from localcluster import podnet, tools
from localcluster.controlplane import runner_owned_readiness
from localcluster.probes import Probe, Prober, parse_probe, probe_once
from localcluster.runner import COMPONENT_CONTAINERS, pod_status_patch, pre_stop_sleep
from localcluster.wait import wait_for

# -- addresses -------------------------------------------------------------------------------


@pytest.mark.parametrize("slot", [0, 1, 15])
def test_each_slot_has_its_own_ranges_inside_the_harness_ranges(slot: int) -> None:
    network = podnet.PodNetwork(slot)
    pods = ipaddress.ip_network(network.pod_cidr)
    services = ipaddress.ip_network(network.service_cidr)
    assert pods.subnet_of(network.block) and network.block.subnet_of(podnet.POD_RANGE)
    assert services.subnet_of(podnet.SERVICE_RANGE)
    # kwok hands out its CIDR's .1 first: the gateway must not be in it.
    assert ipaddress.ip_address(network.gateway) in network.block
    assert ipaddress.ip_address(network.gateway) not in pods
    others = [podnet.PodNetwork(s) for s in range(podnet.SLOTS) if s != slot]
    assert not any(network.block.overlaps(o.block) for o in others)
    assert not any(services.overlaps(ipaddress.ip_network(o.service_cidr)) for o in others)


def test_pod_names_fit_the_kernel_and_the_mac_follows_the_ip() -> None:
    # Interface names are at most 15 bytes.
    assert len(podnet._veth_name("198.18.241.254")) <= 15
    assert podnet._mac("198.18.1.5") == "02:00:c6:12:01:05"
    assert podnet._mac("198.18.1.5") == podnet._mac("198.18.1.5")  # a reused IP, same MAC
    assert podnet.netns_name("198.18.1.5") == "llmroute-pod-198.18.1.5"


def test_loopback_and_foreign_addresses_have_no_pod_network() -> None:
    assert podnet.network_for("127.0.1.5") is None
    assert podnet.network_for("192.0.2.7") is None
    assert podnet.network_for("not an ip") is None


# -- kwok's stages ---------------------------------------------------------------------------


@pytest.fixture
def stages() -> list[dict]:
    if not tools.kwok_stages().exists():
        pytest.skip(f"kwok's stages are not built; run `{tools.BUILD_COMMAND}`")
    return [s for s in runner_owned_readiness(tools.kwok_stages()) if s.get("kind") == "Stage"]


def test_runner_served_pods_start_not_ready_and_others_as_before(stages: list[dict]) -> None:
    by_name = {s["metadata"]["name"]: s for s in stages}
    mine, others = by_name["pod-start-not-ready"], by_name["pod-ready"]
    template = mine["spec"]["next"]["statusTemplate"]
    assert 'status: "True"\n  type: Ready' not in template
    assert 'status: "False"\n  type: Ready' in template
    assert 'status: "False"\n  type: ContainersReady' in template
    assert 'status: "True"\n  type: Ready' in others["spec"]["next"]["statusTemplate"]
    # Every pod matches exactly one of them: the same label, In for one, NotIn for the other.
    [mine_label] = [e for e in mine["spec"]["selector"]["matchExpressions"] if "labels" in e["key"]]
    [other_label] = [
        e for e in others["spec"]["selector"]["matchExpressions"] if "labels" in e["key"]
    ]
    assert (mine_label["operator"], other_label["operator"]) == ("In", "NotIn")
    assert mine_label["key"] == other_label["key"]
    assert set(mine_label["values"]) == set(other_label["values"]) == set(COMPONENT_CONTAINERS)


# -- the pod status the runner writes --------------------------------------------------------


def pod(ready: str = "False", restarts: int = 0, running: bool = True) -> dict:
    state = {"running": {"startedAt": "2026-01-01T00:00:00Z"}} if running else {"waiting": {}}
    return {
        "spec": {
            "containers": [
                {
                    "name": "litellm",
                    "image": "litellm:1",
                    "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
                }
            ]
        },
        "status": {
            "conditions": [
                {"type": "Ready", "status": ready},
                {"type": "ContainersReady", "status": ready},
            ],
            "containerStatuses": [
                {
                    "name": "litellm",
                    "image": "litellm:1",
                    "ready": ready == "True",
                    "restartCount": restarts,
                    "state": state,
                }
            ],
        },
    }


def patch(pod_: dict, **kwargs) -> dict | None:
    args = {
        "container": "litellm",
        "ready": True,
        "restarts": 0,
        "running": True,
        "started_at": "2026-01-01T00:00:01Z",
        "last_exit": None,
    }
    return pod_status_patch(pod_, **{**args, **kwargs})


def test_ready_is_written_once_and_only_when_it_changes() -> None:
    body = patch(pod())
    assert body is not None
    conditions = {c["type"]: c["status"] for c in body["status"]["conditions"]}
    assert conditions == {"Ready": "True", "ContainersReady": "True"}
    [status] = body["status"]["containerStatuses"]
    assert status["ready"] is True and status["state"] == {
        "running": {"startedAt": "2026-01-01T00:00:01Z"}
    }
    assert patch(pod("True")) is None
    assert patch(pod("True"), ready=False)["status"]["conditions"][0]["status"] == "False"


def test_a_restart_is_counted_and_its_exit_kept() -> None:
    body = patch(pod("True"), ready=False, restarts=1, running=False, last_exit=137)
    [status] = body["status"]["containerStatuses"]
    assert status["restartCount"] == 1
    assert status["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert status["lastState"]["terminated"]["exitCode"] == 137


def test_pre_stop_sleep_is_read_from_the_served_container() -> None:
    assert pre_stop_sleep(pod(), "proxy") == 5
    assert pre_stop_sleep(pod(), "ollama") == 0


# -- probes ----------------------------------------------------------------------------------


class _Health:
    """A loopback server whose /ready answers 200 or 503 as told."""

    def __init__(self) -> None:
        self.healthy = False
        health = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200 if health.healthy else 503)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def health() -> Iterator[_Health]:
    server = _Health()
    yield server
    server.server.shutdown()
    server.server.server_close()


def test_named_ports_and_paths_come_from_the_container() -> None:
    container = {
        "ports": [{"name": "http", "containerPort": 4000}],
        "readinessProbe": {
            "httpGet": {"path": "/health/readiness", "port": "http"},
            "periodSeconds": 5,
            "failureThreshold": 3,
            "timeoutSeconds": 5,
        },
        "livenessProbe": {"exec": {"command": ["test", "-f", "/data/ready"]}},
    }
    readiness = parse_probe(container, "readinessProbe", host="198.18.1.5")
    assert (readiness.action, readiness.host, readiness.port) == ("httpGet", "198.18.1.5", 4000)
    assert (readiness.period, readiness.failure_threshold, readiness.timeout) == (5, 3, 5)
    liveness = parse_probe(
        container, "livenessProbe", host="h", rewrite=lambda p: p.replace("/data", "/pod/data")
    )
    assert liveness.command == ("test", "-f", "/pod/data/ready")
    assert parse_probe(container, "startupProbe", host="h") is None


def test_probe_results_follow_the_kubelets_rules(health: _Health) -> None:
    http = Probe("httpGet", host="127.0.0.1", port=health.port, path="/ready", timeout=2)
    assert probe_once(http) == (False, "HTTP 503")
    health.healthy = True
    assert probe_once(http) == (True, "HTTP 200")
    assert probe_once(Probe("tcpSocket", host="127.0.0.1", port=health.port))[0]
    assert probe_once(Probe("exec", host="", command=("true",)))[0]
    assert not probe_once(Probe("exec", host="", command=("false",)))[0]


def test_ready_only_while_the_readiness_probe_passes(health: _Health) -> None:
    readiness = Probe(
        "httpGet", host="127.0.0.1", port=health.port, period=0.05, failure_threshold=2
    )
    changes = threading.Event()
    prober = Prober(
        "t", startup=None, readiness=readiness, liveness=None, on_change=changes.set
    ).start()
    try:
        wait_for(lambda: prober.started, timeout=5, what="started")
        assert not prober.ready  # not before the first success
        health.healthy = True
        wait_for(lambda: prober.ready, timeout=5, what="ready")
        health.healthy = False
        wait_for(lambda: not prober.ready, timeout=5, what="not ready")
        assert changes.is_set()
    finally:
        prober.stop()


def test_a_failing_liveness_probe_asks_for_a_restart(health: _Health) -> None:
    failures: list[str] = []
    liveness = Probe("httpGet", host="127.0.0.1", port=health.port, period=0.05)
    prober = Prober(
        "t", startup=None, readiness=None, liveness=liveness, on_failure=failures.append
    ).start()
    try:
        wait_for(lambda: failures, timeout=5, what="a liveness failure")
        assert failures[0].startswith("liveness probe failed: HTTP 503")
        assert not prober.ready
    finally:
        prober.stop()


def test_startup_probe_holds_readiness_back(health: _Health) -> None:
    startup = Probe(
        "httpGet", host="127.0.0.1", port=health.port, period=0.05, failure_threshold=1000
    )
    prober = Prober("t", startup=startup, readiness=None, liveness=None).start()
    try:
        assert not prober.started and not prober.ready
        health.healthy = True
        wait_for(lambda: prober.ready, timeout=5, what="ready after startup")
        assert prober.started
    finally:
        prober.stop()
