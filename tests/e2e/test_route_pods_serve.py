"""A route's pods really serve: scaling, rollouts and deletion move real proxy processes."""

from __future__ import annotations

import base64

import openai
import pytest
from kubernetes import client

from llmroute.api import GROUP, ROUTE_PLURAL, VERSION
from localcluster import FakeOpenAI, ProcessRunner, wait_for

pytestmark = pytest.mark.usefixtures("operator")


def model(name: str, fake: FakeOpenAI) -> dict:
    return {
        "name": name,
        "targets": [
            {
                "provider": "openai",
                "model": "gpt-4o-mini",
                "apiBase": fake.api_base,
                "apiKeySecretRef": {"name": "provider-keys", "key": "openai"},
            }
        ],
    }


def test_scale_roll_and_delete_move_the_proxy_processes(
    api: client.ApiClient, namespace: str, process_runner: ProcessRunner
) -> None:
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    with FakeOpenAI(name="fake-openai") as fake:
        core.create_namespaced_secret(
            namespace, {"metadata": {"name": "provider-keys"}, "stringData": {"openai": "sk-x"}}
        )
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            ROUTE_PLURAL,
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "LLMRoute",
                "metadata": {"name": "gw"},
                "spec": {"models": [model("smart", fake)]},
            },
        )
        master_key = base64.b64decode(
            wait_for(
                lambda: core.read_namespaced_secret("gw-master-key", namespace),
                what="the generated master key",
            ).data["masterKey"]
        ).decode()

        def serving(config_hash: str | None = None) -> list:
            """Every proxy pod of the route (with that config) served by a live process."""
            pods = [
                p
                for p in core.list_namespaced_pod(
                    namespace, label_selector="llmroute.dev/route=gw"
                ).items
                if p.metadata.deletion_timestamp is None
                and p.status.phase == "Running"
                and config_hash in (None, p.metadata.annotations["llmroute.dev/config-hash"])
            ]
            return [
                process_runner.wait_serving(p.metadata.name, timeout=120, namespace=namespace)
                for p in pods
            ]

        def models_at(process) -> list[str]:
            gateway = openai.OpenAI(base_url=f"{process.url}/v1", api_key=master_key)
            return sorted(m.id for m in gateway.models.list())

        [first] = wait_for(lambda: len(s := serving()) == 1 and s, timeout=180, what="1 proxy")
        assert models_at(first) == ["smart"]

        custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, ROUTE_PLURAL, "gw", {"spec": {"proxy": {"replicas": 2}}}
        )
        two = wait_for(lambda: len(s := serving()) == 2 and s, timeout=180, what="2 proxies")
        assert len({p.host for p in two}) == 2
        for process in two:
            assert models_at(process) == ["smart"]

        def config_hash() -> str:
            route = custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, ROUTE_PLURAL, "gw"
            )
            return route["status"]["configHash"]

        old_hash = config_hash()
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            ROUTE_PLURAL,
            "gw",
            {"spec": {"models": [model("smart", fake), model("cheap", fake)]}},
        )
        new_hash = wait_for(
            lambda: (h := config_hash()) != old_hash and h, what="the new config rendered"
        )
        rolled = wait_for(
            lambda: len(s := serving(new_hash)) == 2 and s, timeout=240, what="the rollout"
        )
        for process in rolled:
            assert models_at(process) == ["cheap", "smart"]

        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, ROUTE_PLURAL, "gw")
        wait_for(
            lambda: not process_runner.processes(namespace),
            timeout=120,
            what="every proxy process ended",
        )
