"""The managed Ollama against a real control plane: StatefulSet, headless Service,
NetworkPolicy and the model volume, and a request that reaches the local model.

kwok runs the Ollama pod in name only and the process runner serves a fake Ollama at its IP,
so the pull step itself (payloads/ollama_pull.sh) is not run here: tests/unit/test_ollama_pull.py
runs it. What is real here is what the cluster does with the objects: the StatefulSet
controller's claims, revisions and retention, garbage collection, scheduling onto a bound
volume, and the real litellm proxy answering from Ollama when the clouds fail.
"""

from __future__ import annotations

import base64
import json
import urllib.request
from collections.abc import Iterator

import openai
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from llmroute import kube
from llmroute.api import GROUP, ROUTE_PLURAL, VERSION
from llmroute.api.route import parse_route
from llmroute.route.ollama import keep_claim_templates, observe_ollama
from localcluster import Behaviour, FakeAnthropic, FakeOpenAI, ProcessRunner, wait_for
from manifests import render_manifest

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]

ROUTE = "loc"
OLLAMA = f"{ROUTE}-ollama"
CLAIM = f"models-{OLLAMA}-0"  # <volumeClaimTemplate>-<StatefulSet>-<ordinal>
PROXY_SELECTOR = ",".join(
    f"{k}={v}"
    for k, v in {
        "app.kubernetes.io/name": "litellm",
        "app.kubernetes.io/instance": ROUTE,
        "app.kubernetes.io/component": "proxy",
    }.items()
)


def manifest(ollama: dict, targets: list[dict] | None = None) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LLMRoute",
        "metadata": {"name": ROUTE},
        "spec": {
            "models": [
                {
                    "name": "local",
                    "targets": targets or [{"provider": "ollama", "model": "llama3.2"}],
                }
            ],
            "ollama": ollama,
        },
    }


@pytest.fixture
def apis(api):
    return client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api)


def create_route(custom, namespace: str, route: dict) -> dict:
    return custom.create_namespaced_custom_object(GROUP, VERSION, namespace, ROUTE_PLURAL, route)


def read_route(custom, namespace: str) -> dict:
    return custom.get_namespaced_custom_object(GROUP, VERSION, namespace, ROUTE_PLURAL, ROUTE)


def wait_statefulset(apps, namespace: str):
    return wait_for(
        lambda: apps.read_namespaced_stateful_set(OLLAMA, namespace),
        timeout=90,
        what="the Ollama StatefulSet",
    )


def wait_claim(core, namespace: str):
    return wait_for(
        lambda: core.read_namespaced_persistent_volume_claim(CLAIM, namespace),
        timeout=60,
        what=f"the StatefulSet controller's claim {CLAIM}",
    )


def models_env(statefulset) -> str:
    (container,) = statefulset.spec.template.spec.containers
    return next(e.value for e in container.env if e.name == "LLMROUTE_OLLAMA_MODELS")


def test_children_are_owned_and_as_declared(apis, namespace) -> None:
    core, apps, custom = apis
    # The pod must pass the restricted Pod Security Standard (docs/ollama.md#security): the
    # API server refuses the StatefulSet controller's pod otherwise.
    core.patch_namespace(
        namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    route = create_route(
        custom,
        namespace,
        manifest({"models": ["llama3.2"], "storage": {"size": "5Gi"}, "numParallel": 2}),
    )
    statefulset = wait_statefulset(apps, namespace)
    service = core.read_namespaced_service(OLLAMA, namespace)
    policy = client.NetworkingV1Api(core.api_client).read_namespaced_network_policy(
        OLLAMA, namespace
    )
    uid = route["metadata"]["uid"]
    for child in (statefulset, service, policy):
        owners = [(o.kind, o.name, o.uid, o.controller) for o in child.metadata.owner_references]
        assert owners == [("LLMRoute", ROUTE, uid, True)], child.metadata.name
        assert child.metadata.labels["llmroute.dev/route"] == ROUTE
        assert child.metadata.labels["app.kubernetes.io/component"] == "ollama"

    assert service.spec.cluster_ip == "None"
    assert [(p.name, p.port) for p in service.spec.ports] == [("http", 11434)]
    (ingress_from_proxies, _) = policy.spec.ingress
    assert ingress_from_proxies._from[0].pod_selector.match_labels == {
        "app.kubernetes.io/name": "litellm",
        "app.kubernetes.io/instance": ROUTE,
        "app.kubernetes.io/component": "proxy",
    }
    assert [p.port for p in ingress_from_proxies.ports] == [11434]

    spec = statefulset.spec
    assert spec.service_name == OLLAMA
    retention = spec.persistent_volume_claim_retention_policy
    assert (retention.when_deleted, retention.when_scaled) == ("Retain", "Retain")
    (template,) = spec.volume_claim_templates
    assert template.metadata.name == "models"
    assert template.spec.resources.requests == {"storage": "5Gi"}
    assert template.spec.access_modes == ["ReadWriteOnce"]
    (container,) = spec.template.spec.containers
    assert container.name == "ollama"
    assert {e.name: e.value for e in container.env}["OLLAMA_NUM_PARALLEL"] == "2"

    wait_for(
        lambda: core.read_namespaced_pod(f"{OLLAMA}-0", namespace),
        timeout=60,
        what="the Ollama pod admitted under the restricted Pod Security Standard",
    )

    # The claim comes from the StatefulSet controller, as declared, and with Retain it is not
    # owned by anything that a deletion would collect.
    claim = wait_claim(core, namespace)
    assert claim.spec.resources.requests == {"storage": "5Gi"}
    assert claim.metadata.labels["llmroute.dev/route"] == ROUTE
    assert not claim.metadata.owner_references

    # Applying the same StatefulSet again is a no-op on the server, volumeClaimTemplates
    # included (which the server would refuse to change if it saw a difference).
    current = read_route(custom, namespace)
    owned = render_manifest(current).objects[-1]
    owned["metadata"]["ownerReferences"] = [kube.owner_reference(current)]
    before = kube.get(core.api_client, "apps/v1", "StatefulSet", namespace, OLLAMA)
    applied = kube.apply(core.api_client, owned)
    assert applied["metadata"]["generation"] == before["metadata"]["generation"]
    assert ours(applied) == ours(before)


def ours(obj: dict) -> list[dict]:
    return [e for e in obj["metadata"]["managedFields"] if e["manager"] == kube.FIELD_MANAGER]


def test_changing_the_models_rolls_the_pod_template(apis, namespace) -> None:
    core, apps, custom = apis
    create_route(custom, namespace, manifest({"models": ["llama3.2"]}))
    before = wait_for(
        lambda: (
            (s := apps.read_namespaced_stateful_set(OLLAMA, namespace)).status.update_revision and s
        ),
        timeout=90,
        what="the first revision of the StatefulSet",
    )
    assert models_env(before) == "llama3.2"

    custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        ROUTE_PLURAL,
        ROUTE,
        {"spec": {"ollama": {"models": ["llama3.2", "qwen2.5:7b"]}}},
    )
    after = wait_for(
        lambda: (
            (s := apps.read_namespaced_stateful_set(OLLAMA, namespace))
            and models_env(s) == "llama3.2 qwen2.5:7b"
            and s.status.update_revision != before.status.update_revision
            and s
        ),
        timeout=60,
        what="the new model list in a new revision of the pod template",
    )
    # Only the template moved: the volume (and with it the models already pulled) stays.
    assert after.spec.volume_claim_templates == before.spec.volume_claim_templates
    assert after.metadata.generation == before.metadata.generation + 1
    assert core.read_namespaced_persistent_volume_claim(CLAIM, namespace)


def test_a_volume_change_is_refused_by_the_server_and_kept_out_of_the_apply(
    apis, namespace
) -> None:
    core, apps, custom = apis
    create_route(custom, namespace, manifest({"models": ["llama3.2"]}))
    wait_statefulset(apps, namespace)
    route = read_route(custom, namespace)
    route["spec"]["ollama"] = {"models": ["llama3.2", "phi3"], "storage": {"size": "50Gi"}}
    desired = render_manifest(route).objects[-1]
    desired["metadata"]["ownerReferences"] = [kube.owner_reference(route)]
    with pytest.raises(ApiException) as refused:
        kube.apply(core.api_client, desired)
    assert refused.value.status == 422
    assert "volumeClaimTemplates" in refused.value.body or "Forbidden" in refused.value.body

    existing = kube.get(core.api_client, "apps/v1", "StatefulSet", namespace, OLLAMA)
    kept, message = keep_claim_templates(desired, existing)
    assert message is not None and "50Gi" in message
    applied = kube.apply(core.api_client, kept)
    assert applied["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"] == {
        "storage": "20Gi"
    }
    (container,) = applied["spec"]["template"]["spec"]["containers"]
    assert {e["name"]: e.get("value") for e in container["env"]}[
        "LLMROUTE_OLLAMA_MODELS"
    ] == "llama3.2 phi3"


def test_deleting_the_route_leaves_the_model_volume(apis, namespace) -> None:
    core, apps, custom = apis
    create_route(custom, namespace, manifest({"models": ["llama3.2"]}))
    wait_statefulset(apps, namespace)
    claim = wait_claim(core, namespace)

    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, ROUTE_PLURAL, ROUTE)

    def statefulset_gone() -> bool:
        try:
            apps.read_namespaced_stateful_set(OLLAMA, namespace)
        except ApiException as error:
            return error.status == 404
        return False

    wait_for(statefulset_gone, timeout=90, what="garbage collection of the StatefulSet")
    kept = core.read_namespaced_persistent_volume_claim(CLAIM, namespace)
    assert kept.metadata.uid == claim.metadata.uid
    assert kept.metadata.deletion_timestamp is None

    # How docs/ollama.md reclaims it: by the route's labels.
    selector = f"llmroute.dev/route={ROUTE},app.kubernetes.io/component=ollama"
    listed = core.list_namespaced_persistent_volume_claim(namespace, label_selector=selector)
    assert [c.metadata.name for c in listed.items] == [CLAIM]
    core.delete_collection_namespaced_persistent_volume_claim(namespace, label_selector=selector)


@pytest.fixture
def clouds() -> Iterator[tuple[FakeAnthropic, FakeOpenAI]]:
    anthropic, openai_ = FakeAnthropic(name="fake-anthropic"), FakeOpenAI(name="fake-openai")
    anthropic.start()
    openai_.start()
    anthropic.behaviour = Behaviour.ERROR500
    openai_.behaviour = Behaviour.RATELIMIT429
    yield anthropic, openai_
    anthropic.stop()
    openai_.stop()


@pytest.fixture
def bound_volume(api, namespace) -> Iterator[None]:
    """A pre-provisioned volume bound to the Ollama's claim (storageClassName ""): no
    provisioner runs here, and the scheduler places no pod whose claim is unbound."""
    core = client.CoreV1Api(api)
    name = f"{namespace}-ollama-models"
    core.create_persistent_volume(
        {
            "metadata": {"name": name},
            "spec": {
                "capacity": {"storage": "5Gi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": f"/var/lib/llmroute-e2e/{name}"},
                "claimRef": {"namespace": namespace, "name": CLAIM},
            },
        }
    )
    yield
    core.delete_persistent_volume(name)


def pull(url: str, model: str) -> None:
    """What the container's `ollama pull` asks the server (the fake holds no model at start)."""
    request = urllib.request.Request(
        f"{url}/api/pull",
        data=json.dumps({"model": model, "stream": False}).encode(),
        headers={"Content-Type": "application/json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        assert json.loads(response.read())["status"] == "success"


def test_the_local_model_answers_when_the_clouds_fail(
    cluster, api, apis, namespace, clouds, bound_volume
) -> None:
    """A request for `smart` fails on both cloud fakes and is answered by the fake Ollama
    that the runner serves at the Ollama pod's IP, through the real litellm proxy.

    The ollama target gets its apiBase set to that pod IP once the pod has one: without it,
    litellm would resolve the managed Ollama by the headless Service's DNS name, and no DNS
    serves cluster names here (nor do Services get endpoints for loopback pod IPs). The
    route keeps spec.ollama, so the StatefulSet, its volume and its pod are the real ones.
    """
    core, _, custom = apis
    anthropic, openai_ = clouds
    core.create_namespaced_secret(
        namespace,
        {"metadata": {"name": "keys"}, "stringData": {"anthropic": "sk-a", "openai": "sk-o"}},
    )
    cloud_targets = [
        {
            "provider": "anthropic",
            "model": "claude-sonnet-4-5",
            "apiBase": anthropic.url,
            "apiKeySecretRef": {"name": "keys", "key": "anthropic"},
        },
        {
            "provider": "openai",
            "model": "gpt-4",
            "apiBase": openai_.url,
            "apiKeySecretRef": {"name": "keys", "key": "openai"},
        },
    ]
    route = manifest(
        {"models": ["llama3.2"], "storage": {"size": "5Gi", "storageClassName": ""}},
        [*cloud_targets, {"provider": "ollama", "model": "llama3.2"}],
    )
    route["spec"]["models"][0]["name"] = "smart"
    route["spec"]["router"] = {"timeoutSeconds": 5, "numRetries": 0}
    create_route(custom, namespace, route)

    pod = wait_for(
        lambda: (
            (p := core.read_namespaced_pod(f"{OLLAMA}-0", namespace)).status.pod_ip
            and p.status.phase == "Running"
            and p
        ),
        timeout=120,
        what="the Ollama pod Running on its bound volume",
    )
    ollama_url = f"http://{pod.status.pod_ip}:11434"
    targets = [*cloud_targets, {"provider": "ollama", "model": "llama3.2", "apiBase": ollama_url}]
    custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        ROUTE_PLURAL,
        ROUTE,
        {"spec": {"models": [{"name": "smart", "targets": targets}]}},
    )
    config_hash = render_manifest(read_route(custom, namespace)).config_hash

    with ProcessRunner(api_client=cluster.api_client(), namespace=namespace) as runner:
        runner.wait_serving(pod.metadata.name, timeout=60, namespace=namespace)
        # The Ollama status reads the real StatefulSet and the fake's /api/tags at the pod IP.
        state = observe_ollama(api, parse_route(read_route(custom, namespace)))
        assert state is not None
        assert state.models == [{"name": "llama3.2", "present": "False"}]
        pull(ollama_url, "llama3.2")
        state = wait_for(
            lambda: (
                (s := observe_ollama(api, parse_route(read_route(custom, namespace))))
                and s.status
                and s
            ),
            timeout=60,
            what="OllamaReady from the StatefulSet and /api/tags",
        )
        assert state.models == [{"name": "llama3.2", "present": "True"}]

        proxy = wait_for(
            lambda: next(
                (
                    p
                    for p in core.list_namespaced_pod(
                        namespace, label_selector=PROXY_SELECTOR
                    ).items
                    if p.metadata.annotations.get("llmroute.dev/config-hash") == config_hash
                    and p.status.phase == "Running"
                    and not p.metadata.deletion_timestamp
                ),
                None,
            ),
            timeout=120,
            what="a proxy pod with the Ollama pod's address in its config",
        )
        served = runner.wait_serving(proxy.metadata.name, timeout=180, namespace=namespace)
        master = core.read_namespaced_secret(f"{ROUTE}-master-key", namespace)
        key = base64.b64decode(master.data["masterKey"]).decode()
        gateway = openai.OpenAI(base_url=f"{served.url}/v1", api_key=key, max_retries=0, timeout=60)
        reply = gateway.chat.completions.create(
            model="smart", messages=[{"role": "user", "content": "Hello"}]
        )
        assert "fake-ollama" in reply.choices[0].message.content
        assert anthropic.inference_requests(), "the first cloud was tried"
        assert openai_.inference_requests(), "the second cloud was tried"
        assert runner.ollama(pod.metadata.name, namespace).inference_requests()

    # The runner is gone, and with it the fake: presence is Unknown, not guessed.
    state = observe_ollama(api, parse_route(read_route(custom, namespace)))
    assert state is not None
    assert state.models == [{"name": "llama3.2", "present": "Unknown"}]
