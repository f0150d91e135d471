"""The local cluster behaves like one where availability and isolation are decided: pods
in their own network namespaces, Ready only once serving, Services routing through
kube-proxy, NetworkPolicies enforced by kube-router, and nothing leaving the machine."""

from __future__ import annotations

import base64
import contextlib
import http.client
import ipaddress
import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from kubernetes import client

from llmroute.api import GROUP, ROUTE_PLURAL, VERSION
from localcluster import podnet
from localcluster.controlplane import LocalCluster, prebound_volume
from localcluster.fakes import FakeOpenAI
from localcluster.runner import ProcessRunner
from localcluster.wait import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def network(cluster: LocalCluster) -> podnet.PodNetwork:
    if cluster.network is None:
        pytest.skip(f"no pod network here: {podnet.unavailable_reason()}")
    return cluster.network


@pytest.fixture
def services(cluster: LocalCluster, network: podnet.PodNetwork) -> None:
    if not cluster.services:
        pytest.skip("this cluster runs no kube-proxy/kube-router (see its log)")


# -- dialling from inside a pod's namespace -----------------------------------------------------

_DIAL = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
    print("connected")
except ConnectionRefusedError:
    print("refused")
except TimeoutError:
    print("timeout")
except OSError as error:
    print(f"error {error.errno}")
"""


def dial(netns: str, host: str, port: int, timeout: float = 3.0) -> str:
    """A TCP connection attempt from a namespace: connected | refused | timeout | error N."""
    result = subprocess.run(
        [*podnet.exec_prefix(netns), sys.executable, "-c", _DIAL, host, str(port), str(timeout)],
        capture_output=True,
        text=True,
        timeout=timeout + 30,
    )
    return result.stdout.strip() or result.stderr.strip()


@dataclass
class ClientPod:
    """A Pod that kwok gives an IP, with a namespace of its own at that IP: what kube-router
    sees as a client (its namespace and labels decide the policy)."""

    name: str
    namespace: str
    ip: str
    netns: str

    def dial(self, host: str, port: int, timeout: float = 3.0) -> str:
        return dial(self.netns, host, port, timeout)


@pytest.fixture
def client_pods(api: client.ApiClient, network: podnet.PodNetwork) -> Iterator:
    core = client.CoreV1Api(api)
    made: list[ClientPod] = []

    def make(namespace: str, labels: dict[str, str] | None = None) -> ClientPod:
        name = f"client-{uuid.uuid4().hex[:6]}"
        core.create_namespaced_pod(
            namespace,
            {
                "metadata": {"name": name, "labels": labels or {"app": "client"}},
                "spec": {"containers": [{"name": "client", "image": "client:1"}]},
            },
        )
        pod = wait_for(
            lambda: (p := core.read_namespaced_pod(name, namespace)).status.pod_ip and p,
            timeout=60,
            what=f"client pod {name} with an IP",
        )
        made.append(
            ClientPod(name, namespace, pod.status.pod_ip, podnet.add_pod(pod.status.pod_ip))
        )
        return made[-1]

    yield make
    for pod in made:
        podnet.remove_pod(pod.ip)
        with contextlib.suppress(Exception):
            core.delete_namespaced_pod(pod.name, pod.namespace, grace_period_seconds=0)


# -- the guard --------------------------------------------------------------------------------

OUTSIDE_NETNS = "llmroute-outside-standin"
OUTSIDE_HOST_LINK = "lroutside"
# An address outside 198.18.0.0/15, routed on this host to a namespace the test makes:
# even without the guard, a packet to it would never leave the machine.
OUTSIDE_NET = "203.0.113.0/30"
OUTSIDE_HOST_SIDE, OUTSIDE_ADDRESS = "203.0.113.1", "203.0.113.2"


def _sh(*argv: str, stdin: str | None = None) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, input=stdin).stdout


@pytest.fixture
def outside() -> Iterator[str]:
    """An "outside" stand-in: a namespace on its own veth, with a server, and a counter of
    every IPv4 packet from the pod range that reaches it."""
    subprocess.run(["ip", "netns", "del", OUTSIDE_NETNS], capture_output=True)
    subprocess.run(["ip", "link", "del", OUTSIDE_HOST_LINK], capture_output=True)
    _sh("ip", "netns", "add", OUTSIDE_NETNS)
    try:
        _sh(
            "ip", "link", "add", OUTSIDE_HOST_LINK, "type", "veth",
            "peer", "name", "eth0", "netns", OUTSIDE_NETNS,
        )  # fmt: skip
        _sh("ip", "addr", "add", f"{OUTSIDE_HOST_SIDE}/30", "dev", OUTSIDE_HOST_LINK)
        _sh("ip", "link", "set", OUTSIDE_HOST_LINK, "up")
        _sh(
            "ip", "-n", OUTSIDE_NETNS, "-batch", "-",
            stdin=f"addr add {OUTSIDE_ADDRESS}/30 dev eth0\nlink set eth0 up\nlink set lo up\n"
            f"route add default via {OUTSIDE_HOST_SIDE}\n",
        )  # fmt: skip
        _sh(
            "ip", "netns", "exec", OUTSIDE_NETNS, "nft", "-f", "-",
            stdin="table ip standin {\n chain seen {\n"
            " type filter hook prerouting priority raw; policy accept;\n"
            " ip saddr 198.18.0.0/16 counter\n }\n}\n",
        )  # fmt: skip
        yield OUTSIDE_NETNS
    finally:
        subprocess.run(["ip", "link", "del", OUTSIDE_HOST_LINK], capture_output=True)
        subprocess.run(["ip", "netns", "del", OUTSIDE_NETNS], capture_output=True)


def packets_seen_by_outside() -> int:
    rules = json.loads(
        _sh("ip", "netns", "exec", OUTSIDE_NETNS, "nft", "-j", "list", "table", "ip", "standin")
    )
    return sum(
        item["rule"]["expr"][-1]["counter"]["packets"]
        for item in rules["nftables"]
        if "rule" in item
    )


def test_a_pod_dialling_outside_is_refused_and_nothing_arrives(
    cluster: LocalCluster, network: podnet.PodNetwork, outside: str, client_pods, namespace: str
) -> None:
    # The guard and the unreachable route are in place (they went in before any pod).
    guard = _sh("nft", "list", "table", "inet", network.guard_table)
    assert f'iifname "{network.bridge}" oifname != "{network.bridge}"' in guard
    routes = json.loads(_sh("ip", "-j", "route", "show", "type", "unreachable"))
    assert {"dst": "198.18.0.0/15"}.items() <= next(
        r for r in routes if r["dst"] == "198.18.0.0/15"
    ).items()

    server = podnet.run_in_netns(outside, lambda: socket.create_server((OUTSIDE_ADDRESS, 8080)))
    accepted: list[object] = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    try:
        # The stand-in is really there and routed: the host reaches it.
        socket.create_connection((OUTSIDE_ADDRESS, 8080), 5).close()
        wait_for(lambda: accepted, timeout=5, what="the host's connection accepted")
        before = packets_seen_by_outside()

        pod = client_pods(namespace)
        assert pod.dial(network.gateway, 1) == "refused"  # the pod's network works at all
        assert pod.dial(OUTSIDE_ADDRESS, 8080) == "refused"  # the guard's reset
        assert packets_seen_by_outside() == before == 0
    finally:
        server.close()


# -- Ready means serving; Services route; a rollout under load fails nothing --------------------


def _route(name: str, fake: FakeOpenAI, models: list[str], replicas: int) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LLMRoute",
        "metadata": {"name": name},
        "spec": {
            "proxy": {"replicas": replicas},
            "models": [
                {
                    "name": model,
                    "targets": [
                        {
                            "provider": "openai",
                            "model": "gpt-4o-mini",
                            "apiBase": fake.api_base,
                            "apiKeySecretRef": {"name": "provider-keys", "key": "openai"},
                        }
                    ],
                }
                for model in models
            ],
        },
    }


def _answers(host: str, port: int = 4000) -> bool:
    try:
        connection = http.client.HTTPConnection(host, port, timeout=2)
        connection.request("GET", "/health/liveliness")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


@dataclass
class ReadyWatch:
    """Reads the route's Ready condition over and over; whenever it says True, checks at
    once that a proxy of the route answers."""

    custom: client.CustomObjectsApi
    core: client.CoreV1Api
    namespace: str
    name: str
    ready_seen: int = 0
    ready_while_silent: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            route = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, ROUTE_PLURAL, self.name
            )
            conditions = (route.get("status") or {}).get("conditions") or []
            if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                self.ready_seen += 1
                pods = self.core.list_namespaced_pod(
                    self.namespace,
                    label_selector=f"llmroute.dev/route={self.name},app.kubernetes.io/component=proxy",
                ).items
                if not any(p.status.pod_ip and _answers(p.status.pod_ip) for p in pods):
                    self.ready_while_silent.append(time.strftime("%H:%M:%S"))
            self.stop.wait(0.1)


@dataclass
class Load:
    """Chat requests through the Service's ClusterIP, one after another, each on a new
    connection (as a fresh client would)."""

    url_host: str
    master_key: str
    sent: int = 0
    failed: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        body = json.dumps({"model": "smart", "messages": [{"role": "user", "content": "hi"}]})
        while not self.stop.is_set():
            self.sent += 1
            connection = http.client.HTTPConnection(self.url_host, 4000, timeout=30)
            try:
                connection.request(
                    "POST",
                    "/v1/chat/completions",
                    body,
                    {
                        "Authorization": f"Bearer {self.master_key}",
                        "Content-Type": "application/json",
                    },
                )
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    self.failed.append(f"HTTP {response.status}")
            except OSError as error:
                self.failed.append(repr(error))
            finally:
                connection.close()


def test_ready_means_serving_and_a_rollout_under_load_fails_nothing(
    api: client.ApiClient, namespace: str, process_runner: ProcessRunner, services: None, operator
) -> None:
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    with FakeOpenAI(name="fake-openai") as fake:
        core.create_namespaced_secret(
            namespace, {"metadata": {"name": "provider-keys"}, "stringData": {"openai": "sk-x"}}
        )
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, ROUTE_PLURAL, _route("gw", fake, ["smart"], 2)
        )
        watch = ReadyWatch(custom, core, namespace, "gw")
        watcher = threading.Thread(target=watch.run, daemon=True)
        watcher.start()
        try:
            wait_for(lambda: watch.ready_seen, timeout=240, what="the route Ready")
            service = core.read_namespaced_service("gw", namespace)
            cluster_ip = service.spec.cluster_ip
            assert ipaddress.ip_address(cluster_ip) in podnet.SERVICE_RANGE
            # EndpointSlices list the ready pods, as in a cluster.
            slices = (
                client.DiscoveryV1Api(api)
                .list_namespaced_endpoint_slice(
                    namespace, label_selector="kubernetes.io/service-name=gw"
                )
                .items
            )
            ready_ips = {
                address
                for s in slices
                for e in s.endpoints or []
                if e.conditions.ready
                for address in e.addresses
            }
            assert ready_ips, "no ready endpoint"
            wait_for(lambda: _answers(cluster_ip), timeout=30, what="the ClusterIP answering")

            master_key = base64.b64decode(
                core.read_namespaced_secret("gw-master-key", namespace).data["masterKey"]
            ).decode()
            load = Load(cluster_ip, master_key)
            loader = threading.Thread(target=load.run, daemon=True)
            loader.start()
            wait_for(lambda: load.sent >= 20, timeout=60, what="load flowing")

            old_hash = custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, ROUTE_PLURAL, "gw"
            )["status"]["configHash"]
            custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                ROUTE_PLURAL,
                "gw",
                {"spec": {"models": _route("gw", fake, ["smart", "cheap"], 2)["spec"]["models"]}},
            )

            def rolled() -> bool:
                pods = core.list_namespaced_pod(
                    namespace,
                    label_selector="llmroute.dev/route=gw,app.kubernetes.io/component=proxy",
                ).items
                hashes = {p.metadata.annotations["llmroute.dev/config-hash"] for p in pods}
                ready = [
                    p
                    for p in pods
                    if any(
                        c.type == "Ready" and c.status == "True" for c in p.status.conditions or []
                    )
                ]
                processes = process_runner.processes(namespace)
                return (
                    old_hash not in hashes
                    and len(ready) == 2
                    and len(processes) == 2
                    and all(i.state == "running" for i in processes)
                )

            wait_for(rolled, timeout=300, what="the rollout done, old processes gone")
            after = load.sent
            wait_for(lambda: load.sent >= after + 20, timeout=60, what="load after the rollout")
            load.stop.set()
            loader.join(60)
            print(
                f"\nrollout under load through {cluster_ip}: "
                f"{load.sent} sent, {len(load.failed)} failed"
            )
            assert load.failed == [], load.failed[:5]
        finally:
            watch.stop.set()
            watcher.join(30)
        print(
            f"Ready=True observed {watch.ready_seen} times, "
            f"{len(watch.ready_while_silent)} while no proxy answered"
        )
        assert watch.ready_seen and not watch.ready_while_silent


# -- NetworkPolicies ----------------------------------------------------------------------------

_GET = """
import http.client, sys
connection = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=5)
try:
    connection.request("GET", sys.argv[3])
    print(connection.getresponse().status)
except OSError as error:
    print(type(error).__name__)
"""


def http_get(pod: ClientPod, host: str, port: int, path: str) -> str:
    result = subprocess.run(
        [*podnet.exec_prefix(pod.netns), sys.executable, "-c", _GET, host, str(port), path],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.stdout.strip() or result.stderr.strip()


@pytest.fixture
def other_namespaces(api: client.ApiClient, namespace: str) -> Iterator:
    core = client.CoreV1Api(api)
    made: list[str] = []

    def make(suffix: str, labels: dict[str, str] | None = None) -> str:
        name = f"{namespace}-{suffix}"
        core.create_namespace({"metadata": {"name": name, "labels": labels or {}}})
        made.append(name)
        return name

    yield make
    for name in made:
        core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture
def ollama_volume(api: client.ApiClient, namespace: str) -> Iterator[None]:
    """A volume bound in advance to the route's Ollama claim (no provisioner runs here)."""
    core = client.CoreV1Api(api)
    name = f"{namespace}-gw-ollama"
    core.create_persistent_volume(prebound_volume(name, namespace, "models-gw-ollama-0"))
    yield
    core.delete_persistent_volume(name)


def test_network_policies_let_only_the_declared_callers_in(
    api: client.ApiClient,
    namespace: str,
    process_runner: ProcessRunner,
    services: None,
    operator,
    client_pods,
    other_namespaces,
    ollama_volume: None,
) -> None:
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    caller_label = {"llmroute.dev/e2e-caller": namespace}
    callers = other_namespaces("callers", caller_label)
    strangers = other_namespaces("strangers")
    with FakeOpenAI(name="fake-openai") as fake:
        core.create_namespaced_secret(
            namespace, {"metadata": {"name": "provider-keys"}, "stringData": {"openai": "sk-x"}}
        )
        route = _route("gw", fake, ["smart"], 1)
        route["spec"]["access"] = {"from": [{"namespaceSelector": {"matchLabels": caller_label}}]}
        route["spec"]["models"][0]["targets"].append({"provider": "ollama", "model": "llama3.2"})
        route["spec"]["ollama"] = {
            "models": ["llama3.2"],
            "storage": {"size": "5Gi", "storageClassName": ""},
        }
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, ROUTE_PLURAL, route)

        def ready_proxy():
            pods = core.list_namespaced_pod(
                namespace, label_selector="llmroute.dev/route=gw,app.kubernetes.io/component=proxy"
            ).items
            return next(
                (
                    p
                    for p in pods
                    if any(
                        c.type == "Ready" and c.status == "True" for c in p.status.conditions or []
                    )
                ),
                None,
            )

        proxy_ip = wait_for(ready_proxy, timeout=240, what="a Ready proxy pod").status.pod_ip
        cluster_ip = core.read_namespaced_service("gw", namespace).spec.cluster_ip
        ollama_ip = process_runner.wait_serving(
            "gw-ollama-0", timeout=120, namespace=namespace
        ).host

        caller = client_pods(callers)
        stranger = client_pods(strangers)
        # Stands in for the operator's pod: its label, in the operator's namespace
        # (POD_NAMESPACE of the session's operator); the impostor copies the label elsewhere.
        operator_label = {"app.kubernetes.io/name": "llmroute-operator"}
        scraper = client_pods(operator.namespace, operator_label)
        impostor = client_pods(strangers, operator_label)

        # Policies are programmed a moment after they exist: wait for the stranger to be
        # turned away, then check every path.
        wait_for(
            lambda: stranger.dial(proxy_ip, 4000, 2) in ("refused", "timeout"),
            timeout=60,
            what="the stranger turned away",
        )
        results = {
            "caller -> pod": caller.dial(proxy_ip, 4000),
            "caller -> ClusterIP": caller.dial(cluster_ip, 4000),
            "stranger -> pod": stranger.dial(proxy_ip, 4000),
            "stranger -> ClusterIP": stranger.dial(cluster_ip, 4000),
            "operator -> /metrics/": http_get(scraper, proxy_ip, 4000, "/metrics/"),
            "impostor -> pod": impostor.dial(proxy_ip, 4000),
            "operator -> Ollama": scraper.dial(ollama_ip, 11434),
            "impostor -> Ollama": impostor.dial(ollama_ip, 11434),
            "proxy -> Ollama": dial(podnet.netns_name(proxy_ip), ollama_ip, 11434),
            "caller -> Ollama": caller.dial(ollama_ip, 11434),
            "stranger -> Ollama": stranger.dial(ollama_ip, 11434),
        }
        print(f"\nNetworkPolicy paths: {results}")
        assert results["caller -> pod"] == "connected"
        assert results["caller -> ClusterIP"] == "connected"
        assert results["stranger -> pod"] in ("refused", "timeout")
        assert results["stranger -> ClusterIP"] in ("refused", "timeout")
        assert results["operator -> /metrics/"] == "200"
        assert results["impostor -> pod"] in ("refused", "timeout")
        assert results["operator -> Ollama"] == "connected"
        assert results["impostor -> Ollama"] in ("refused", "timeout")
        assert results["proxy -> Ollama"] == "connected"
        assert results["caller -> Ollama"] in ("refused", "timeout")
        assert results["stranger -> Ollama"] in ("refused", "timeout")


def test_an_exposed_route_admits_the_gateways_namespace_while_exposed(
    api: client.ApiClient,
    namespace: str,
    process_runner: ProcessRunner,
    services: None,
    operator,
    client_pods,
    other_namespaces,
) -> None:
    """spec.expose.fromNamespace: the ingress controller's pods (a client pod in its namespace
    stands in) reach the proxy while the route is exposed, and only then; others never do."""
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    controller_namespace = other_namespaces("ingress")
    strangers = other_namespaces("strangers")
    with FakeOpenAI(name="fake-openai") as fake:
        core.create_namespaced_secret(
            namespace, {"metadata": {"name": "provider-keys"}, "stringData": {"openai": "sk-x"}}
        )
        route = _route("gw", fake, ["smart"], 1)
        route["spec"]["expose"] = {
            "ingress": {"host": "llm.example.com"},
            "fromNamespace": {"matchLabels": {"kubernetes.io/metadata.name": controller_namespace}},
        }
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, ROUTE_PLURAL, route)
        proxy_ip = wait_for(
            lambda: next(
                (
                    p.status.pod_ip
                    for p in core.list_namespaced_pod(
                        namespace,
                        label_selector="llmroute.dev/route=gw,app.kubernetes.io/component=proxy",
                    ).items
                    if any(
                        c.type == "Ready" and c.status == "True" for c in p.status.conditions or []
                    )
                ),
                None,
            ),
            timeout=240,
            what="a Ready proxy pod",
        )
        cluster_ip = core.read_namespaced_service("gw", namespace).spec.cluster_ip
        controller = client_pods(controller_namespace)
        stranger = client_pods(strangers)
        wait_for(
            lambda: stranger.dial(proxy_ip, 4000, 2) in ("refused", "timeout"),
            timeout=60,
            what="the stranger turned away",
        )
        assert controller.dial(proxy_ip, 4000) == "connected"
        assert controller.dial(cluster_ip, 4000) == "connected"
        assert stranger.dial(cluster_ip, 4000) in ("refused", "timeout")

        # No longer exposed: the controller's namespace is turned away as well.
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, ROUTE_PLURAL, "gw", {"spec": {"expose": None}}
        )
        wait_for(
            lambda: controller.dial(proxy_ip, 4000, 2) in ("refused", "timeout"),
            timeout=60,
            what="the controller's namespace turned away",
        )
        assert stranger.dial(proxy_ip, 4000) in ("refused", "timeout")
