"""The secrets sweep on the live cluster: it finds a Secret's value planted in a ConfigMap and
an Event. The planted Secret has a type of its own, which only this test's sweep looks for:
the session's sweep (tests/e2e/conftest.py) sweeps Opaque Secrets and so passes."""

from __future__ import annotations

import base64
import uuid

import pytest
from kubernetes import client

from localcluster import wait_for
from secrets_sweep import SecretsSweep

pytestmark = pytest.mark.e2e

PLANTED_TYPE = "llmroute.dev/planted-for-the-sweep"


def test_the_sweep_finds_a_planted_secret(cluster, api, namespace, tmp_path) -> None:
    core = client.CoreV1Api(api)
    value = f"sk-planted-{uuid.uuid4().hex}"
    log = tmp_path / "proxy.log"
    log.write_text(f"an upstream call with key {value}\n")
    with cluster.api_client() as sweep_api:
        sweep = SecretsSweep(sweep_api, lambda: [log], secret_types=[PLANTED_TYPE])
        sweep.start()
        try:
            core.create_namespaced_secret(
                namespace,
                {
                    "metadata": {"name": "planted"},
                    "type": PLANTED_TYPE,
                    "data": {"key": base64.b64encode(value.encode()).decode()},
                },
            )
            core.create_namespaced_config_map(
                namespace, {"metadata": {"name": "leaky"}, "data": {"config.yaml": value}}
            )
            core.create_namespaced_event(
                namespace,
                {
                    "metadata": {"name": "leaky.1"},
                    "involvedObject": {
                        "kind": "ConfigMap",
                        "name": "leaky",
                        "namespace": namespace,
                    },
                    "reason": "Leaked",
                    "message": f"the key is {value}",
                    "type": "Normal",
                },
            )
            source = f"Secret {namespace}/planted key key"
            expected = {
                f"the value of {source} is in ConfigMap {namespace}/leaky",
                f"the value of {source} is in Event {namespace}/leaky.1",
                f"the value of {source} is in log {log}",
            }
            wait_for(
                lambda: set(sweep.leaks()) == expected,
                timeout=60,
                what="the sweep finding the planted value in the ConfigMap, Event and log",
            )
        finally:
            sweep.stop()
