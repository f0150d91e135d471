"""The local control plane as the operator benchmark needs it.

localcluster.LocalCluster, plus:

- a second static token for the operator (user `llmroute-operator`), and an audit policy that
  logs that user's requests only, so the operator's API traffic is counted apart from the
  controllers', the scheduler's and kwok's (apiserver_request_total has no user label);
- pod addresses from a /16 instead of a loopback /24 (nothing runs at the pods' addresses
  here, and 1,000 routes need more than 254 pods);
- nodes enough for every pod, and a controller-manager whose client is not held to its default
  20 requests/s, so Deployments become Available without the cluster's controllers queueing
  behind their own rate limit;
- the apiserver's metrics, read with the admin token.
"""

from __future__ import annotations

import json
import math
import secrets
import ssl
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from localcluster import FAKE_NODE, LocalCluster

OPERATOR_USER = "llmroute-operator"
BENCH_POD_CIDR = "10.128.0.0/16"
PODS_PER_NODE = 250
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})

AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    # One event per request: when it completes (a watch: when it starts).
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "Metadata", "users": [OPERATOR_USER]},
        {"level": "None"},
    ],
}


@dataclass
class AuditEvent:
    received: float  # wall-clock seconds
    verb: str
    resource: str
    subresource: str
    code: int | None


@dataclass
class AuditLog:
    """The operator's requests as the apiserver's audit log records them."""

    path: Path
    events: list[AuditEvent] = field(default_factory=list)
    _offset: int = 0

    def refresh(self) -> None:
        try:
            with self.path.open("rb") as log:
                log.seek(self._offset)
                data = log.read()
        except FileNotFoundError:
            return
        # Only whole lines; a partly written one is read next time.
        end = data.rfind(b"\n") + 1
        self._offset += end
        for line in data[:end].splitlines():
            event = json.loads(line)
            stage, verb = event.get("stage"), event.get("verb", "")
            if (verb == "watch") != (stage == "ResponseStarted"):
                continue
            ref = event.get("objectRef") or {}
            self.events.append(
                AuditEvent(
                    received=_timestamp(event["requestReceivedTimestamp"]),
                    verb=verb,
                    resource=ref.get("resource", event.get("requestURI", "")),
                    subresource=ref.get("subresource", ""),
                    code=(event.get("responseStatus") or {}).get("code"),
                )
            )

    def between(self, start: float, end: float) -> list[AuditEvent]:
        self.refresh()
        return [e for e in self.events if start <= e.received <= end]

    def counts(self, start: float, end: float) -> dict[str, Any]:
        """Requests by verb, writes by resource, in [start, end] (wall-clock seconds)."""
        events = self.between(start, end)
        writes = [e for e in events if e.verb in WRITE_VERBS]
        return {
            "requests": len(events),
            "writes": len(writes),
            "by_verb": dict(sorted(Counter(e.verb for e in events).items())),
            "writes_by_resource": dict(
                sorted(
                    Counter(
                        f"{e.verb} {e.resource}{'/' + e.subresource if e.subresource else ''}"
                        for e in writes
                    ).items()
                )
            ),
        }


def _timestamp(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclass
class BenchCluster(LocalCluster):
    pod_cidr: str = BENCH_POD_CIDR
    # Thousands of pods and no proxy processes: loopback pod IPs, and kwok makes pods
    # Ready as it starts them (the benchmark measures the operator, not the data plane).
    pod_network: bool | None = False
    runner_readiness: bool = False
    nodes: int = 1
    controller_qps: int = 200
    operator_token: str = field(default="", init=False)
    operator_kubeconfig: Path = field(init=False)
    audit: AuditLog = field(init=False)

    @classmethod
    def for_pods(cls, pods: int, **kwargs: Any) -> BenchCluster:
        return cls(nodes=max(1, math.ceil((pods + 20) / PODS_PER_NODE)), **kwargs)

    def start(self) -> None:
        super().start()
        self.operator_kubeconfig = self.workdir / "operator.kubeconfig"
        self.operator_kubeconfig.write_text(
            yaml.safe_dump(self.kubeconfig_for(OPERATOR_USER, self.operator_token))
        )
        if self.with_pods:
            for index in range(1, self.nodes):
                self._create_node(f"kwok-node-{index}")

    def _spawn(self, name: str, argv: list[str]):  # type: ignore[override]
        if name == "kube-apiserver":
            argv = self._apiserver_argv(argv)
        elif name == "kube-controller-manager":
            argv = [
                *argv,
                f"--kube-api-qps={self.controller_qps}",
                f"--kube-api-burst={self.controller_qps * 2}",
            ]
        return super()._spawn(name, argv)

    def _apiserver_argv(self, argv: list[str]) -> list[str]:
        pki = self.workdir / "pki"
        # The admin token is in the file already (written just before the spawn).
        self.operator_token = secrets.token_hex(16)
        with (pki / "tokens.csv").open("a") as tokens:
            tokens.write(
                f'{self.operator_token},{OPERATOR_USER},{OPERATOR_USER},"system:masters"\n'
            )
        policy = self.workdir / "audit-policy.yaml"
        policy.write_text(yaml.safe_dump(AUDIT_POLICY))
        self.audit = AuditLog(self.workdir / "audit.log")
        return [
            *argv,
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.audit.path}",
            "--audit-log-format=json",
            "--audit-log-maxsize=0",
        ]

    def _create_node(self, name: str) -> None:
        from kubernetes import client

        core = client.CoreV1Api(self.api_client())
        template = core.read_node(FAKE_NODE)
        capacity = {"cpu": "64", "memory": "256Gi", "pods": str(PODS_PER_NODE)}
        labels = {**(template.metadata.labels or {}), "kubernetes.io/hostname": name}
        core.create_node(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {"kwok.x-k8s.io/node": "fake"},
                    "labels": labels,
                },
                "status": {"allocatable": capacity, "capacity": capacity},
            }
        )

    def request_totals(self) -> dict[str, float]:
        """apiserver_request_total summed by verb (every client's requests)."""
        ctx = ssl.create_default_context(cafile=str(self._serving_cert))
        request = urllib.request.Request(
            f"{self.server}/metrics", headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(request, context=ctx, timeout=30) as response:
            text = response.read().decode()
        totals: Counter[str] = Counter()
        for family in text_string_to_metric_families(text):
            if family.name != "apiserver_request":
                continue
            for sample in family.samples:
                if sample.name == "apiserver_request_total":
                    totals[sample.labels.get("verb", "")] += sample.value
        return dict(totals)


def diff_totals(before: dict[str, float], after: dict[str, float]) -> dict[str, int]:
    verbs = sorted(set(before) | set(after))
    return {
        v: int(after.get(v, 0) - before.get(v, 0))
        for v in verbs
        if after.get(v, 0) != before.get(v, 0)
    }
