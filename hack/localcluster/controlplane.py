"""Start a real Kubernetes control plane as local processes (the envtest pattern).

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok run on loopback
with free ports and a temporary directory. kwok plays the kubelet of one fake node and
gives pods addresses from the cluster's slot of the pod network (localcluster.podnet:
198.18.0.0/16 on a bridge of its own, Services in 198.19.0.0/16), so a real process can
serve at a pod's IP inside the pod's network namespace and EndpointSlices fill as in a
cluster. Where namespaces are not allowed (not root), pods get addresses in a loopback
/24 instead, and Services have no endpoints. Everything is torn down by stop(), and
children die with their parent.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import logging
import os
import random
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import podnet, tools
from .processes import die_with_parent, tail

log = logging.getLogger(__name__)


def random_pod_cidr() -> str:
    """A loopback /24 for one cluster's pods: clusters running side by side never share
    pod IPs, so their proxies never take each other's addresses."""
    rng = random.SystemRandom()
    return f"127.{rng.randint(16, 254)}.{rng.randint(0, 255)}.0/24"


FAKE_NODE = "kwok-node-0"


def prebound_volume(name: str, namespace: str, claim: str, size: str = "5Gi") -> dict[str, Any]:
    """A PersistentVolume bound in advance to ``claim`` (storageClassName ""): no provisioner
    runs in the local cluster, and the scheduler places no pod whose claim is unbound. Its
    hostPath is never read: the process runner keeps a claim's files in a directory of its
    own. ``size`` must be at least what the claim requests."""
    return {
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "",
            "persistentVolumeReclaimPolicy": "Retain",
            "hostPath": {"path": f"/var/lib/localcluster/{name}"},
            "claimRef": {"namespace": namespace, "name": claim},
        },
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen
    log_path: Path


@dataclass
class LocalCluster:
    """A control plane on loopback. Use as a context manager or call start()/stop()."""

    workdir: Path | None = None
    with_pods: bool = True  # kube-scheduler + kwok: pods become Running and Ready
    crd_dir: Path | None = tools.REPO_ROOT / "crds"
    # None: a pod network when the machine allows one, else loopback pod addresses.
    pod_network: bool | None = None
    # The process runner owns the Ready condition of the pods it serves (Ready means
    # serving). False: kwok makes every pod Ready at once, for harnesses that run no
    # proxies (the operator benchmark).
    runner_readiness: bool = True
    pod_cidr: str = field(init=False, default="")
    service_cidr: str = field(init=False, default="10.96.0.0/16")
    network: podnet.PodNetwork | None = field(init=False, default=None)
    # Services route (kube-proxy) and NetworkPolicies hold (kube-router): with a pod
    # network, the tools built, and no other cluster on this host running them.
    services: bool = field(init=False, default=False)
    _service_rules: podnet.ServiceRules | None = field(init=False, default=None)
    kubeconfig: Path = field(init=False)
    server: str = field(init=False)
    token: str = field(init=False)
    _processes: list[_Process] = field(default_factory=list, init=False)
    _own_workdir: bool = field(default=False, init=False)

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        missing = tools.missing()
        if missing:
            raise RuntimeError(
                f"missing binaries {', '.join(missing)}: build them with `{tools.BUILD_COMMAND}`"
            )
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="llmroute-cluster-"))
            self._own_workdir = True
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._claim_network()
            self._start_etcd()
            self._start_apiserver()
            if self.crd_dir is not None:
                self.install_crds(self.crd_dir)
            # The garbage collector discovers CRDs created after it started only on its
            # 30 s resync, so it starts after the CRDs are in.
            self._start_controller_manager()
            if self.with_pods:
                self._start_scheduler()
                self._start_kwok()
                self._create_fake_node()
                self._start_service_network()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for proc in reversed(self._processes):
            _terminate(proc.popen)
        self._processes.clear()
        if self._service_rules is not None:
            self._service_rules.release()
            self._service_rules = None
            self.services = False
        # After the processes: nothing may run in a namespace that is being deleted.
        if self.network is not None:
            self.network.release()
            self.network = None
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def pids(self) -> list[int]:
        return [p.popen.pid for p in self._processes]

    # -- clients -------------------------------------------------------------------

    def api_client(self):  # -> kubernetes.client.ApiClient
        from kubernetes import client, config

        configuration = client.Configuration()
        config.load_kube_config(str(self.kubeconfig), client_configuration=configuration)
        return client.ApiClient(configuration)

    def install_crds(self, crd_dir: Path, timeout: float = 30) -> None:
        from kubernetes import client

        api = client.ApiextensionsV1Api(self.api_client())
        names = []
        for path in sorted(crd_dir.glob("*.yaml")):
            for crd in yaml.safe_load_all(path.read_text()):
                if crd:
                    api.create_custom_resource_definition(crd)
                    names.append(crd["metadata"]["name"])
        deadline = time.monotonic() + timeout
        for name in names:
            while True:
                status = api.read_custom_resource_definition(name).status
                conditions = {c.type: c.status for c in (status.conditions or [])}
                if conditions.get("Established") == "True":
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"CRD {name} not Established: {conditions}")
                time.sleep(0.1)

    # -- components ----------------------------------------------------------------

    def _claim_network(self) -> None:
        reason = podnet.unavailable_reason() if self.pod_network is not False else "disabled"
        if reason is None and self.with_pods:
            self.network = podnet.PodNetwork.claim()
            self.pod_cidr = self.network.pod_cidr
            self.service_cidr = self.network.service_cidr
            return
        if self.pod_network:
            raise RuntimeError(f"no pod network: {reason}")
        log.warning("no pod network (%s): pods get loopback addresses", reason)
        self.pod_cidr = self.pod_cidr or random_pod_cidr()

    def _spawn(self, name: str, argv: list[str]) -> _Process:
        log_path = self.workdir / f"{name}.log"
        with log_path.open("ab") as log:
            popen = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        proc = _Process(name, popen, log_path)
        self._processes.append(proc)
        return proc

    def _wait(self, proc: _Process, check, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise RuntimeError(
                    f"{proc.name} exited with {proc.popen.returncode}:\n{tail(proc.log_path)}"
                )
            with contextlib.suppress(Exception):
                if check():
                    return
            time.sleep(0.1)
        raise TimeoutError(f"{proc.name} not ready after {timeout}s:\n{tail(proc.log_path)}")

    def _start_etcd(self) -> None:
        client_url = f"http://127.0.0.1:{free_port()}"
        peer_url = f"http://127.0.0.1:{free_port()}"
        proc = self._spawn(
            "etcd",
            [
                str(tools.binary("etcd")),
                "--name=default",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                "--unsafe-no-fsync",  # throwaway data; fsync only slows the tests
                "--log-level=warn",
            ],
        )
        self._etcd_url = client_url
        self._wait(proc, lambda: _http_ok(f"{client_url}/health"), 30)

    def _start_apiserver(self) -> None:
        pki = self.workdir / "pki"
        pki.mkdir(exist_ok=True)
        sa_key, sa_pub = pki / "sa.key", pki / "sa.pub"
        subprocess.run(
            ["openssl", "genrsa", "-out", str(sa_key), "2048"], check=True, capture_output=True
        )
        subprocess.run(
            ["openssl", "rsa", "-in", str(sa_key), "-pubout", "-out", str(sa_pub)],
            check=True,
            capture_output=True,
        )
        self.token = secrets.token_hex(16)
        token_file = pki / "tokens.csv"
        token_file.write_text(f'{self.token},admin,admin,"system:masters"\n')
        port = free_port()
        self.server = f"https://127.0.0.1:{port}"
        proc = self._spawn(
            "kube-apiserver",
            [
                str(tools.binary("kube-apiserver")),
                f"--etcd-servers={self._etcd_url}",
                f"--cert-dir={pki}",
                f"--secure-port={port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                # The kubernetes Service cannot point at a loopback address.
                "--endpoint-reconciler-type=none",
                f"--service-cluster-ip-range={self.service_cidr}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={sa_pub}",
                f"--service-account-signing-key-file={sa_key}",
                f"--token-auth-file={token_file}",
                "--authorization-mode=RBAC",
                "--allow-privileged=true",
                "--v=0",
            ],
        )
        self._sa_key = sa_key
        self._serving_cert = pki / "apiserver.crt"
        self.kubeconfig = self.workdir / "kubeconfig"

        def ready() -> bool:
            # The apiserver writes its self-signed serving certificate before it listens.
            ctx = ssl.create_default_context(cafile=str(self._serving_cert))
            request = urllib.request.Request(
                f"{self.server}/readyz", headers={"Authorization": f"Bearer {self.token}"}
            )
            with urllib.request.urlopen(request, context=ctx, timeout=2) as response:
                return response.status == 200

        self._wait(proc, ready, 60)
        self.kubeconfig.write_text(yaml.safe_dump(self.kubeconfig_for("admin", self.token)))

    def kubeconfig_for(self, user: str, token: str) -> dict:
        """A kubeconfig for this cluster that authenticates with a bearer token."""
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "llmroute-local",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": base64.b64encode(
                            self._serving_cert.read_bytes()
                        ).decode(),
                    },
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [
                {"name": "llmroute-local", "context": {"cluster": "llmroute-local", "user": user}}
            ],
            "current-context": "llmroute-local",
        }

    def _start_controller_manager(self) -> None:
        proc = self._spawn(
            "kube-controller-manager",
            [
                str(tools.binary("kube-controller-manager")),
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                f"--service-account-private-key-file={self._sa_key}",
                f"--root-ca-file={self._serving_cert}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--use-service-account-credentials=false",
                # Pod IPs come from kwok, not from node CIDRs.
                "--allocate-node-cidrs=false",
                "--concurrent-gc-syncs=5",
                "--v=0",
            ],
        )
        self._wait(proc, lambda: self._has_default_service_account(), 60)

    def _has_default_service_account(self) -> bool:
        from kubernetes import client

        core = client.CoreV1Api(self.api_client())
        core.read_namespaced_service_account("default", "default")
        return True

    def _start_scheduler(self) -> None:
        proc = self._spawn(
            "kube-scheduler",
            [
                str(tools.binary("kube-scheduler")),
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--v=0",
            ],
        )
        self._wait(proc, lambda: True, 1)

    def _start_kwok(self) -> None:
        proc = self._spawn(
            "kwok",
            [
                str(tools.binary("kwok")),
                f"--kubeconfig={self.kubeconfig}",
                "--manage-all-nodes=true",
                f"--cidr={self.pod_cidr}",
                *([f"--node-ip={self.network.gateway}"] if self.network else []),
                f"--server-address=127.0.0.1:{free_port()}",
                "-c",
                str(self._kwok_stages()),
            ],
        )
        self._wait(proc, lambda: True, 1)

    def _start_service_network(self) -> None:
        """kube-proxy (ClusterIPs) and kube-router (NetworkPolicies), if this cluster can."""
        if self.network is None:
            return
        missing = tools.missing(tools.NETWORK_TOOLS)
        if missing:
            log.warning(
                "no Services or NetworkPolicies: %s not built (`%s`)",
                ", ".join(missing),
                tools.BUILD_COMMAND,
            )
            return
        for command in ("iptables", "iptables-save", "ipset"):
            if shutil.which(command) is None:
                log.warning("no Services or NetworkPolicies: `%s` is not installed", command)
                return
        self._service_rules = podnet.ServiceRules.claim()
        if self._service_rules is None:
            log.warning(
                "no Services or NetworkPolicies: another local cluster on this host runs them"
            )
            return
        block = str(self.network.block)
        proxy = self._spawn(
            "kube-proxy",
            [
                str(tools.binary("kube-proxy")),
                f"--kubeconfig={self.kubeconfig}",
                "--proxy-mode=nftables",
                f"--hostname-override={FAKE_NODE}",
                f"--cluster-cidr={block}",
                # Zeros keep the host's conntrack settings as they are.
                "--conntrack-max-per-core=0",
                "--conntrack-tcp-timeout-established=0",
                "--conntrack-tcp-timeout-close-wait=0",
                f"--metrics-bind-address=127.0.0.1:{free_port()}",
                f"--healthz-bind-address=127.0.0.1:{(healthz := free_port())}",
                "--v=0",
            ],
        )
        self._wait(proxy, lambda: _http_ok(f"http://127.0.0.1:{healthz}/healthz"), 60)
        self._spawn(
            "kube-router",
            [
                str(tools.binary("kube-router")),
                f"--kubeconfig={self.kubeconfig}",
                f"--hostname-override={FAKE_NODE}",
                "--run-firewall=true",
                "--run-router=false",
                "--run-service-proxy=false",
                "--run-loadbalancer=false",
                "--enable-cni=false",
                "--enable-ipv6=false",
                f"--service-cluster-ip-range={self.service_cidr}",
                "--health-port=0",
                "--metrics-port=0",
            ],
        )
        self.services = True

    def _kwok_stages(self) -> Path:
        """kwok's stages, except that the pods the process runner serves become Running
        but not Ready: the runner probes them and owns their Ready condition."""
        if not self.runner_readiness:
            return tools.kwok_stages()
        path = self.workdir / "kwok-stages.yaml"
        path.write_text(yaml.safe_dump_all(runner_owned_readiness(tools.kwok_stages())))
        return path

    def _create_fake_node(self, timeout: float = 60) -> None:
        from kubernetes import client

        core = client.CoreV1Api(self.api_client())
        capacity = {"cpu": "64", "memory": "256Gi", "pods": "250"}
        core.create_node(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": FAKE_NODE,
                    "annotations": {"kwok.x-k8s.io/node": "fake"},
                    "labels": {
                        "type": "kwok",
                        "kubernetes.io/hostname": FAKE_NODE,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                    },
                },
                "status": {"allocatable": capacity, "capacity": capacity},
            }
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            node = core.read_node(FAKE_NODE)
            if any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or []):
                return
            time.sleep(0.2)
        raise TimeoutError(f"node {FAKE_NODE} not Ready:\n{tail(self.workdir / 'kwok.log')}")


# The pods the process runner serves (localcluster.runner.pod_component, by the label
# the operator gives them): kwok must not make these Ready; the runner does, once their
# readiness probe passes. The two stages below partition pods on this one label, so every
# pod matches exactly one of them.
RUNNER_SERVED = {
    "key": '.metadata.labels.["app.kubernetes.io/component"]',
    "values": ["proxy", "ollama", "redis"],
}


def runner_owned_readiness(stages_file: Path) -> list[dict]:
    """kwok's stages with pod-ready split in two: other pods are Ready at once, as kwok
    makes them; runner-served pods only start Running, not Ready, containers not ready."""
    stages = [s for s in yaml.safe_load_all(stages_file.read_text()) if s]
    out = []
    for stage in stages:
        if stage.get("kind") != "Stage" or stage["metadata"]["name"] != "pod-ready":
            out.append(stage)
            continue
        others = copy.deepcopy(stage)
        others["spec"]["selector"]["matchExpressions"].append(
            {**RUNNER_SERVED, "operator": "NotIn"}
        )
        mine = copy.deepcopy(stage)
        mine["metadata"]["name"] = "pod-start-not-ready"
        mine["spec"]["selector"]["matchExpressions"].append({**RUNNER_SERVED, "operator": "In"})
        template = mine["spec"]["next"]["statusTemplate"]
        for condition in ("Ready", "ContainersReady"):
            template, count = re.subn(
                rf'status: "True"(\n\s*)type: {condition}\n',
                rf'status: "False"\1type: {condition}\n',
                template,
            )
            assert count == 1, f"kwok's pod-ready stage changed: {condition}"
        # The first `ready: true` is the containers' (init containers come after).
        assert "ready: true" in template, "kwok's pod-ready stage changed: ready"
        mine["spec"]["next"]["statusTemplate"] = template.replace("ready: true", "ready: false", 1)
        out += [others, mine]
    return out


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status == 200


def _terminate(popen: subprocess.Popen, grace: float = 10) -> None:
    if popen.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(popen.pid, signal.SIGTERM)
    try:
        popen.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)
        popen.wait()


@contextlib.contextmanager
def local_cluster(**kwargs) -> Iterator[LocalCluster]:
    with LocalCluster(**kwargs) as cluster:
        yield cluster
