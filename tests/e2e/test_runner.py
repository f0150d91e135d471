"""The process runner against the real control plane: a pod that kwok runs in name only
becomes a real litellm proxy at the pod's IP, and goes away with the pod."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import yaml
from kubernetes import client

from localcluster.controlplane import LocalCluster
from localcluster.fakes import FakeOpenAI
from localcluster.runner import ProcessInfo, ProcessRunner
from localcluster.wait import wait_for

pytestmark = pytest.mark.e2e

UPSTREAM_KEY = "sk-upstream-e2e"
MASTER_KEY = "sk-master-e2e-4f1c9a2b7d"
LABELS = {
    "app.kubernetes.io/name": "litellm",
    "app.kubernetes.io/instance": "gw",
    "app.kubernetes.io/component": "proxy",
    "app.kubernetes.io/managed-by": "llmroute",
}


@pytest.fixture
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(required_key=UPSTREAM_KEY) as fake:
        yield fake


def proxy_deployment() -> dict:
    """A Deployment shaped like the operator's proxy, written by hand."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "gw-litellm", "labels": LABELS},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": LABELS},
            "template": {
                "metadata": {"labels": LABELS},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [
                        {
                            "name": "litellm",
                            "image": "ghcr.io/berriai/litellm:irrelevant",
                            "args": [
                                "--config",
                                "/etc/litellm/config.yaml",
                                "--port",
                                "4000",
                                "--num_workers",
                                "1",
                            ],
                            "ports": [{"name": "http", "containerPort": 4000}],
                            "env": [
                                {
                                    "name": "OPENAI_API_KEY",
                                    "valueFrom": {
                                        "secretKeyRef": {"name": "gw-keys", "key": "openai"}
                                    },
                                },
                                {
                                    "name": "LITELLM_MASTER_KEY",
                                    "valueFrom": {
                                        "secretKeyRef": {"name": "gw-keys", "key": "masterKey"}
                                    },
                                },
                            ],
                            "volumeMounts": [
                                {"name": "config", "mountPath": "/etc/litellm", "readOnly": True},
                                {
                                    "name": "caller-billing",
                                    "mountPath": "/etc/llmroute/keys/billing",
                                    "readOnly": True,
                                },
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "config", "configMap": {"name": "gw-litellm"}},
                        {"name": "caller-billing", "secret": {"secretName": "billing-key"}},
                    ],
                },
            },
        },
    }


def litellm_config(upstream: FakeOpenAI) -> dict:
    return {
        "model_list": [
            {
                "model_name": "smart",
                "litellm_params": {
                    "model": "openai/gpt-4o-mini",
                    "api_base": upstream.api_base,
                    "api_key": "os.environ/OPENAI_API_KEY",
                },
            }
        ],
        "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"},
    }


def running_pods(core: client.CoreV1Api, namespace: str) -> list[client.V1Pod]:
    pods = core.list_namespaced_pod(namespace, label_selector="app.kubernetes.io/instance=gw")
    return [
        p
        for p in pods.items
        if p.status.phase == "Running"
        and p.status.pod_ip
        and not p.metadata.deletion_timestamp
        and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    ]


def ask(info: ProcessInfo) -> str:
    gateway = openai.OpenAI(base_url=info.url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    answer = gateway.chat.completions.create(
        model="smart", messages=[{"role": "user", "content": f"hello {info.pod}"}]
    )
    return answer.choices[0].message.content


def test_runner_serves_proxy_pods(
    cluster: LocalCluster,
    api: client.ApiClient,
    namespace: str,
    upstream: FakeOpenAI,
    process_runner: ProcessRunner,
) -> None:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    core.create_namespaced_config_map(
        namespace,
        {
            "metadata": {"name": "gw-litellm"},
            "data": {"config.yaml": yaml.safe_dump(litellm_config(upstream))},
        },
    )
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "gw-keys"},
            "stringData": {"openai": UPSTREAM_KEY, "masterKey": MASTER_KEY},
        },
    )
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "billing-key"}, "stringData": {"key": "caller-1"}}
    )
    apps.create_namespaced_deployment(namespace, proxy_deployment())

    # kwok makes the pod Ready; the runner makes it serve, at the pod's IP.
    [pod] = wait_for(lambda: running_pods(core, namespace), timeout=60, what="a Ready pod")
    first = process_runner.wait_serving(pod.metadata.name, timeout=120, namespace=namespace)
    assert (first.host, first.port) == (pod.status.pod_ip, 4000)
    assert first.host.startswith(cluster.pod_cidr.rsplit(".", 1)[0] + ".")
    assert "fake-openai" in ask(first)
    [forwarded] = upstream.inference_requests()
    assert forwarded.api_key == UPSTREAM_KEY  # resolved from the Secret through the API

    # A changed Secret reaches the mounted file while the process keeps running.
    key_file = first.pod_dir / "etc/llmroute/keys/billing/key"
    assert key_file.read_text() == "caller-1"
    core.patch_namespaced_secret(
        "billing-key", namespace, {"data": {"key": base64.b64encode(b"caller-2").decode()}}
    )
    wait_for(lambda: key_file.read_text() == "caller-2", timeout=30, what="rotated key file")
    assert process_runner.process(pod.metadata.name, namespace).pid == first.pid

    # Two replicas: two processes, side by side on their own IPs, both answering.
    apps.patch_namespaced_deployment_scale("gw-litellm", namespace, {"spec": {"replicas": 2}})

    def two_pods() -> list[client.V1Pod] | None:
        pods = running_pods(core, namespace)
        return pods if len(pods) == 2 else None

    pods = wait_for(two_pods, timeout=60, what="two Ready pods")
    infos = [
        process_runner.wait_serving(p.metadata.name, timeout=120, namespace=namespace) for p in pods
    ]
    assert {i.host for i in infos} == {p.status.pod_ip for p in pods}
    assert len({i.pid for i in infos}) == 2
    for info in infos:
        assert "fake-openai" in ask(info)
    assert len(upstream.inference_requests()) == 3

    # Deleting the Deployment deletes its pods; their processes and directories go too.
    apps.delete_namespaced_deployment("gw-litellm", namespace, propagation_policy="Foreground")
    wait_for(
        lambda: not process_runner.processes(namespace),
        timeout=90,
        what="no processes left for the namespace",
    )
    for info in infos:
        assert not Path(f"/proc/{info.pid}").exists()
        assert not info.pod_dir.exists()
