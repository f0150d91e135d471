"""How a route's objects meet the API server: a spec it refuses changes nothing, a refused apply
or prune is reported in the status, a removed part of the spec leaves the status too."""

from __future__ import annotations

import base64
import datetime
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from llmroute import kube
from llmroute.api import GROUP, ROUTE_PLURAL, VERSION
from localcluster import FakeOpenAI, LocalCluster, ProcessRunner, tools, wait_for

CHART = tools.REPO_ROOT / "charts" / "llmroute"
PROVIDER_KEY = "sk-test-provider-key-never-shown"


def route_manifest(spec: dict) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LLMRoute",
        "metadata": {"name": "gw"},
        "spec": spec,
    }


def smart(api_base: str | None = None) -> dict:
    target = {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "apiKeySecretRef": {"name": "provider-keys", "key": "openai"},
    }
    if api_base:
        target["apiBase"] = api_base
    return {"name": "smart", "targets": [target]}


def get_route(custom: client.CustomObjectsApi, namespace: str) -> dict:
    return custom.get_namespaced_custom_object(GROUP, VERSION, namespace, ROUTE_PLURAL, "gw")


def condition(route: dict, type_: str) -> dict:
    conditions = (route.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), {})


def wait_condition(
    custom: client.CustomObjectsApi,
    namespace: str,
    type_: str,
    status: str,
    reason: str | None = None,
    timeout: float = 120,
) -> dict:
    """The route once `type_` has `status` (and `reason`) for its latest generation."""

    def probe() -> dict | None:
        route = get_route(custom, namespace)
        found = condition(route, type_)
        return (
            route
            if found.get("status") == status
            and reason in (None, found.get("reason"))
            and found.get("observedGeneration") == route["metadata"]["generation"]
            else None
        )

    return wait_for(probe, timeout=timeout, what=f"gw {type_}={status} {reason or ''}")


def patch_spec(custom: client.CustomObjectsApi, namespace: str, spec: dict) -> None:
    """A merge patch of the route's spec: null removes a field, a list is replaced whole."""
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, ROUTE_PLURAL, "gw", {"spec": spec}
    )


# -- a spec the API server refuses ---------------------------------------------------------------


@pytest.fixture
def cpu_policy(api: client.ApiClient, namespace: str) -> Iterator[str]:
    """A platform team's admission policy in the test's namespace: no container may set a
    CPU limit of 3. Only the API server knows it; `llmroute validate` cannot."""
    admission = client.AdmissionregistrationV1Api(api)
    name = f"cpu-limit-{namespace}"
    admission.create_validating_admission_policy(
        {
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": ["apps"],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": ["deployments"],
                        }
                    ]
                },
                "validations": [
                    {
                        "expression": "object.spec.template.spec.containers.all(c, "
                        "!has(c.resources) || !has(c.resources.limits) || "
                        "!('cpu' in c.resources.limits) || "
                        "string(c.resources.limits['cpu']) != '3')",
                        "message": "containers here may not ask for a CPU limit of 3",
                    }
                ],
            },
        }
    )
    admission.create_validating_admission_policy_binding(
        {
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
                },
            },
        }
    )
    probe = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "policy-probe"},
        "spec": {
            "selector": {"matchLabels": {"app": "probe"}},
            "template": {
                "metadata": {"labels": {"app": "probe"}},
                "spec": {
                    "containers": [
                        {"name": "c", "image": "x", "resources": {"limits": {"cpu": "3"}}}
                    ]
                },
            },
        },
    }

    def enforced() -> bool:
        try:
            client.AppsV1Api(api).create_namespaced_deployment(namespace, probe, dry_run="All")
        except ApiException as error:
            return error.status == 422
        return False

    wait_for(enforced, timeout=60, what="the admission policy enforced")
    yield name
    admission.delete_validating_admission_policy_binding(name)
    admission.delete_validating_admission_policy(name)


# (what is patched into the spec, the condition's reason, words of its message). Each patch also
# adds a model, so the ConfigMap would change if anything were applied.
REFUSED = {
    "admission-policy": (
        {"proxy": {"resources": {"limits": {"cpu": "3"}}}},
        "RejectedByAPIServer",
        "Deployment gw-litellm: ",
    ),
    "requests-above-limits": (
        {"proxy": {"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}},
        "InvalidSpec",
        "spec.proxy.resources.requests.cpu",
    ),
    "access-label-key": (
        {"access": {"from": [{"podSelector": {"matchLabels": {"app name": "web"}}}]}},
        "InvalidSpec",
        'spec.access.from[0].podSelector.matchLabels["app name"]',
    ),
    "node-selector-label-key": (
        {"ollama": {"models": ["llama3.2"], "nodeSelector": {"-gpu": "a100"}}},
        "InvalidSpec",
        'spec.ollama.nodeSelector["-gpu"]',
    ),
    "toleration-exists-with-value": (
        {
            "ollama": {
                "models": ["llama3.2"],
                "tolerations": [{"key": "gpu", "operator": "Exists", "value": "yes"}],
            }
        },
        "InvalidSpec",
        "spec.ollama.tolerations[0].value",
    ),
}


def test_a_spec_the_api_server_refuses_changes_nothing(
    api: client.ApiClient,
    namespace: str,
    operator,
    process_runner: ProcessRunner,
    cpu_policy: str,
    record_property,
) -> None:
    core, apps, custom = client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api)
    with FakeOpenAI(name="fake-openai") as fake:
        core.create_namespaced_secret(
            namespace,
            {"metadata": {"name": "provider-keys"}, "stringData": {"openai": PROVIDER_KEY}},
        )
        good = {"models": [smart(fake.api_base)]}
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, ROUTE_PLURAL, route_manifest(good)
        )
        wait_condition(custom, namespace, "Ready", "True", timeout=240)
        master_key = base64.b64decode(
            core.read_namespaced_secret("gw-master-key", namespace).data["masterKey"]
        ).decode()
        pods = core.list_namespaced_pod(namespace, label_selector="llmroute.dev/route=gw")
        [pod] = [p for p in pods.items if p.metadata.deletion_timestamp is None]
        proxy = process_runner.wait_serving(pod.metadata.name, timeout=120, namespace=namespace)
        gateway = openai.OpenAI(base_url=f"{proxy.url}/v1", api_key=master_key)

        def serves() -> None:
            reply = gateway.chat.completions.create(
                model="smart", messages=[{"role": "user", "content": "hi"}]
            )
            assert reply.choices[0].message.content

        def children() -> dict[str, object]:
            return {
                "configmap": core.read_namespaced_config_map("gw-litellm", namespace).data,
                "configmap-version": core.read_namespaced_config_map(
                    "gw-litellm", namespace
                ).metadata.resource_version,
                "deployment": apps.read_namespaced_deployment(
                    "gw-litellm", namespace
                ).spec.template,
                "statefulsets": apps.list_namespaced_stateful_set(namespace).items,
            }

        serves()
        last_good = children()
        cheap = {**smart(fake.api_base), "name": "cheap"}
        for case, (change, reason, words) in REFUSED.items():
            started = time.monotonic()
            patch_spec(custom, namespace, {"models": [smart(fake.api_base), cheap], **change})
            route = wait_condition(custom, namespace, "ConfigValid", "False", reason)
            # The figure for docs/reliability.md (junitxml), not a limit.
            record_property(f"{case}_seconds_to_condition", round(time.monotonic() - started, 1))
            refused = condition(route, "ConfigValid")
            assert words in refused["message"], refused
            if reason == "RejectedByAPIServer":
                assert "may not ask for a CPU limit of 3" in refused["message"], refused
            ready = condition(route, "Ready")
            assert (ready["status"], ready["reason"]) == ("False", "ConfigValidNotTrue")
            assert children() == last_good
            serves()
            # Back to the applied spec: nothing to change, Ready again.
            patch_spec(custom, namespace, {**good, **{key: None for key in change}})
            wait_condition(custom, namespace, "Ready", "True")
        assert children() == last_good
        assert PROVIDER_KEY not in yaml.safe_dump(get_route(custom, namespace)["status"])
        assert master_key not in yaml.safe_dump(get_route(custom, namespace)["status"])


# -- status.ollama -------------------------------------------------------------------------------


def test_removing_spec_ollama_removes_status_ollama(
    api: client.ApiClient, namespace: str, operator
) -> None:
    core, apps, custom = client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api)
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "provider-keys"}, "stringData": {"openai": PROVIDER_KEY}}
    )
    custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        ROUTE_PLURAL,
        route_manifest({"models": [smart()], "ollama": {"models": ["llama3.2"]}}),
    )
    wait_for(
        lambda: "ollama" in (get_route(custom, namespace).get("status") or {}),
        timeout=120,
        what="status.ollama",
    )
    patch_spec(custom, namespace, {"ollama": None})
    wait_for(
        lambda: not apps.list_namespaced_stateful_set(namespace).items,
        timeout=120,
        what="the Ollama StatefulSet pruned",
    )
    route = wait_for(
        lambda: "ollama" not in (r := get_route(custom, namespace))["status"] and r,
        timeout=60,
        what="status.ollama removed",
    )
    assert not condition(route, "OllamaReady")


# -- a refused prune -----------------------------------------------------------------------------


def chart_rbac(namespace: str, release: str) -> list[dict]:
    """The chart's ServiceAccount, Role and RoleBinding for an operator watching `namespace`."""
    out = subprocess.run(
        [
            str(tools.binary("helm")),
            "template",
            release,
            str(CHART),
            "--namespace",
            namespace,
            "--set",
            f"watchNamespaces={{{namespace}}}",
            "--set",
            "rbac.clusterObservation=false",
            "--set",
            "replicaCount=0",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return [
        doc
        for doc in yaml.safe_load_all(out)
        if doc and doc["kind"] in ("ServiceAccount", "Role", "RoleBinding")
    ]


def without_delete(role: dict, group: str, resource: str) -> dict:
    """`role` with `resource` taken out of the rules that grant delete."""
    rules = []
    for rule in role["rules"]:
        if "delete" in rule["verbs"] and group in rule["apiGroups"]:
            rule = {**rule, "resources": [r for r in rule["resources"] if r != resource]}
        if rule["resources"]:
            rules.append(rule)
    return {**role, "rules": rules}


@pytest.fixture
def operator_process(operator) -> Iterator[type]:
    """The OperatorProcess class, with the session's admin operator stopped meanwhile: the
    admin one would prune what the restricted one may not."""
    operator.stop()
    yield type(operator)
    operator.start()


def test_a_refused_prune_is_reported_as_apply_failed(
    api: client.ApiClient,
    cluster: LocalCluster,
    namespace: str,
    tmp_path: Path,
    operator_process: type,
    record_property,
) -> None:
    core, apps, custom = client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api)
    rbac = client.RbacAuthorizationV1Api(api)
    order = ["ServiceAccount", "Role", "RoleBinding"]
    account, role, binding = sorted(
        chart_rbac(namespace, "ops"), key=lambda d: order.index(d["kind"])
    )
    core.create_namespaced_service_account(namespace, account)
    rbac.create_namespaced_role(namespace, without_delete(role, "apps", "statefulsets"))
    rbac.create_namespaced_role_binding(namespace, binding)
    name = account["metadata"]["name"]
    token = core.create_namespaced_service_account_token(
        name, namespace, {"spec": {"expirationSeconds": 3600}}
    ).status.token
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(cluster.kubeconfig_for(f"system:serviceaccount:{namespace}:{name}", token))
    )
    proc = operator_process(kubeconfig, tmp_path / "operator.log", args=["--namespace", namespace])
    proc.start()
    try:
        core.create_namespaced_secret(
            namespace,
            {"metadata": {"name": "provider-keys"}, "stringData": {"openai": PROVIDER_KEY}},
        )
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            ROUTE_PLURAL,
            route_manifest({"models": [smart()], "ollama": {"models": ["llama3.2"]}}),
        )
        wait_for(
            lambda: apps.list_namespaced_stateful_set(namespace).items,
            timeout=120,
            what="the Ollama StatefulSet",
        )
        started = time.monotonic()
        patch_spec(custom, namespace, {"ollama": None})
        try:
            route = wait_condition(custom, namespace, "Applied", "False", "ApplyFailed")
        except TimeoutError as error:
            pytest.fail(f"{error}; the operator's log:\n{proc.log()}")
        record_property("seconds_to_apply_failed", round(time.monotonic() - started, 1))
        failed = condition(route, "Applied")
        assert failed["message"].startswith("delete StatefulSet gw-ollama: "), failed
        assert "forbidden" in failed["message"], failed
        ready = condition(route, "Ready")
        assert (ready["status"], ready["reason"], ready["message"]) == (
            "False",
            "ApplyFailed",
            failed["message"],
        )
        # The other deletes went ahead.
        assert kube.get(api, "v1", "Service", namespace, "gw-ollama") is None
        policy = kube.get(api, "networking.k8s.io/v1", "NetworkPolicy", namespace, "gw-ollama")
        assert policy is None
        master_key = base64.b64decode(
            core.read_namespaced_secret("gw-master-key", namespace).data["masterKey"]
        ).decode()
        for secret in (PROVIDER_KEY, master_key):
            assert secret not in yaml.safe_dump(route["status"])

        # No retry loop: kopf retries the route's handler after APPLY_RETRY_DELAY. Until then
        # only the events of the route's own deletes (the Service, the NetworkPolicy) reconcile
        # it again; a loop would try the delete hundreds of times.
        def log_lines(words: str) -> list[str]:
            lines = proc.log_path.read_text(errors="replace").splitlines()
            return [line for line in lines if words in line]

        def handler_failures() -> list[str]:
            return [line for line in log_lines("failed temporarily") if "gw-ollama" in line]

        wait_for(lambda: len(handler_failures()) >= 2, timeout=240, what="kopf's retry")
        attempts = log_lines("delete StatefulSet gw-ollama")
        assert len(attempts) <= 6, attempts
        first, second = (
            datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            for line in handler_failures()[:2]
        )
        record_property("seconds_between_retries", (second - first).total_seconds())
        record_property("delete_attempts_until_the_retry", len(attempts))

        # Granted the delete, the next retry prunes the StatefulSet and clears the condition.
        started = time.monotonic()
        rbac.replace_namespaced_role(role["metadata"]["name"], namespace, role)
        try:
            route = wait_condition(custom, namespace, "Applied", "True", timeout=240)
        except TimeoutError as error:
            pytest.fail(f"{error}; the operator's log:\n{proc.log()}")
        record_property("seconds_from_grant_to_applied", round(time.monotonic() - started, 1))
        assert not apps.list_namespaced_stateful_set(namespace).items
        assert condition(route, "Ready")["reason"] != "ApplyFailed"
        assert "ollama" not in route["status"]
    finally:
        proc.stop()
