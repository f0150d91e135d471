"""`llmroute render | kubectl apply -f -` (the GitOps path) never installs a known master key.

The real llmroute CLI renders a route, the real kubectl applies the output and the route, and
the operator reconciles it: the master key it ends up with is the operator's random one.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from built_tools import require_tools
from llmroute.api import GROUP, VERSION
from llmroute.payloads.gateway_auth import usable_key
from localcluster import tools, wait_for
from localcluster.controlplane import LocalCluster
from manifests import OLD_RENDER_PLACEHOLDER

pytestmark = pytest.mark.usefixtures("operator")


def route(name: str) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LLMRoute",
        "metadata": {"name": name},
        "spec": {
            "models": [
                {
                    "name": "smart",
                    "targets": [
                        {
                            "provider": "openai",
                            "model": "gpt-4o-mini",
                            "apiKeySecretRef": {"name": "provider-keys", "key": "openai"},
                        }
                    ],
                }
            ]
        },
    }


def kubectl(cluster: LocalCluster, tmp_path: Path, *args: str, stdin: str = "") -> str:
    options = ["--kubeconfig", str(cluster.kubeconfig), "--cache-dir", str(tmp_path / "cache")]
    result = subprocess.run(
        [str(tools.binary("kubectl")), *options, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def master_key(core: client.CoreV1Api, namespace: str, name: str) -> str | None:
    try:
        data = core.read_namespaced_secret(f"{name}-master-key", namespace).data or {}
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise
    return base64.b64decode(data.get("masterKey", "")).decode()


def test_applied_render_output_gets_the_operators_random_master_key(
    cluster: LocalCluster, api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    require_tools("kubectl")
    core = client.CoreV1Api(api)
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "provider-keys"}, "stringData": {"openai": "sk-x"}}
    )
    manifest = tmp_path / "route.yaml"
    manifest.write_text(yaml.safe_dump(route("gw")))
    rendered = subprocess.run(
        [sys.executable, "-m", "llmroute", "render", "-f", str(manifest), "-n", namespace],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "Secret" not in [d["kind"] for d in yaml.safe_load_all(rendered)]
    kubectl(cluster, tmp_path, "apply", "-f", "-", stdin=rendered)
    kubectl(cluster, tmp_path, "-n", namespace, "apply", "-f", str(manifest))
    key = wait_for(lambda: master_key(core, namespace, "gw"), what="the generated master key")
    assert key.startswith("sk-") and len(key) > 40
    assert key not in rendered
    # Applying the same output again changes nothing about the key.
    kubectl(cluster, tmp_path, "apply", "-f", "-", stdin=rendered)
    assert master_key(core, namespace, "gw") == key


def test_an_existing_master_key_secret_is_never_written(
    api: client.ApiClient, namespace: str
) -> None:
    """A Secret that exists keeps its value: a real key, and also the placeholder older
    versions of `llmroute render` printed (the gateway refuses that one; delete the Secret and
    the operator creates a random key)."""
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "provider-keys"}, "stringData": {"openai": "sk-x"}}
    )
    existing = {"mine": "sk-chosen-by-the-user-0123456789", "old": OLD_RENDER_PLACEHOLDER}
    for name, value in existing.items():
        core.create_namespaced_secret(
            namespace,
            {"metadata": {"name": f"{name}-master-key"}, "stringData": {"masterKey": value}},
        )
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "llmroutes", route(name))
    for name in ("mine", "old"):
        wait_for(
            lambda name=name: (
                custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "llmroutes", name)
                .get("status", {})
                .get("configHash")
            ),
            timeout=120,
            what=f"route {name} reconciled",
        )
    for name, value in existing.items():
        assert master_key(core, namespace, name) == value
    assert not usable_key(OLD_RENDER_PLACEHOLDER)
    core.delete_namespaced_secret("old-master-key", namespace)
    # The operator creates the Secret when it next reconciles the route, e.g. on a change.
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "llmroutes", "old", {"spec": {"router": {"numRetries": 1}}}
    )
    fresh = wait_for(
        lambda: (k := master_key(core, namespace, "old")) and usable_key(k) and k,
        timeout=120,
        what="a random key in place of the deleted Secret",
    )
    assert fresh.startswith("sk-")
