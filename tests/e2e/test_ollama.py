"""The managed Ollama against a real control plane: StatefulSet, headless Service,
NetworkPolicy and the model volume, and requests that reach the local model.

kwok schedules the Ollama pod and the process runner runs its container's own command: the
real pull script, which starts the real `ollama serve` at the pod's IP with the pod's claim
as its model store. No registry is reachable, so a volume is provisioned holding the tiny
local model (localcluster.tinymodel) under the names a test declares, as if pulled earlier;
a model named with a loopback host nothing listens on stands for one the registry cannot
serve (its pull fails at once, without a lookup or a packet leaving the machine). What is
real: the StatefulSet controller's claims, revisions and retention, garbage collection,
scheduling onto a bound volume, Ollama's pull, /api/tags and answers, and the real litellm
proxy answering from Ollama when the clouds fail.
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
from localcluster import (
    Behaviour,
    FakeAnthropic,
    FakeOpenAI,
    ProcessRunner,
    prebound_volume,
    tinymodel,
    wait_for,
)
from manifests import render_manifest

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]

ROUTE = "loc"
OLLAMA = f"{ROUTE}-ollama"
CLAIM = f"models-{OLLAMA}-0"  # <volumeClaimTemplate>-<StatefulSet>-<ordinal>
# A model no registry serves here: its host is a loopback port nothing listens on.
UNPULLABLE_MODEL = "127.0.0.1:9/library/absent:latest"
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
    core.create_persistent_volume(prebound_volume(name, namespace, CLAIM))
    yield
    core.delete_persistent_volume(name)


def ollama_api(url: str, path: str, body: dict | None = None) -> dict:
    """A call to the real Ollama at a pod's address."""
    request = urllib.request.Request(
        f"{url}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=60) as response:
        return json.loads(response.read())


def condition(route: dict, kind: str) -> dict:
    return next(
        (c for c in (route.get("status") or {}).get("conditions") or [] if c["type"] == kind), {}
    )


def wait_models_ready(custom, namespace: str, models: list[str], timeout: float = 120) -> dict:
    """The route once the operator reports OllamaReady=True with every model present, as
    Ollama's /api/tags lists them (kwok's immediate Ready of a new pod, before the runner
    reports the probe, can show True with presence still unknown)."""
    wanted = [{"name": m, "present": "True"} for m in models]
    return wait_for(
        lambda: (
            (r := read_route(custom, namespace))
            and condition(r, "OllamaReady").get("status") == "True"
            and (r.get("status") or {}).get("ollama", {}).get("models") == wanted
            and r
        ),
        timeout=timeout,
        what=f"OllamaReady=True with {', '.join(models)} present",
    )


def wait_ollama_pod(core, namespace: str):
    return wait_for(
        lambda: (
            (p := core.read_namespaced_pod(f"{OLLAMA}-0", namespace)).status.pod_ip
            and p.status.phase == "Running"
            and not p.metadata.deletion_timestamp
            and p
        ),
        timeout=120,
        what="the Ollama pod Running on its bound volume",
    )


def whole_log(runner: ProcessRunner, pod: str, namespace: str) -> str:
    """Every run of the pod's container (ollama serve logs each request)."""
    return runner.log(pod, namespace, lines=100_000)


def pod_ready(pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def test_the_local_model_answers_when_the_clouds_fail(
    cluster, api, apis, namespace, clouds, bound_volume
) -> None:
    """A request for `smart` fails on both cloud fakes and is answered by the real Ollama of
    the route's StatefulSet pod, through the real litellm proxy (ollama_chat/), plain and
    streamed.

    The ollama target gets its apiBase set to that pod IP once the pod has one: without it,
    litellm would resolve the managed Ollama by the headless Service's DNS name, and no DNS
    serves cluster names here. The route keeps spec.ollama, so the StatefulSet, its volume and
    its pod are the real ones.
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
    route["spec"]["router"] = {"timeoutSeconds": 30, "numRetries": 0}
    create_route(custom, namespace, route)

    with ProcessRunner(
        api_client=cluster.api_client(), namespace=namespace, ollama_models=["llama3.2"]
    ) as runner:
        pod = wait_ollama_pod(core, namespace)
        ollama_url = f"http://{pod.status.pod_ip}:11434"
        runner.wait_serving(pod.metadata.name, timeout=60, namespace=namespace)
        # The operator's status: readiness from the StatefulSet (the pull script found the
        # model on the volume), presence from the real Ollama's /api/tags.
        wait_models_ready(custom, namespace, ["llama3.2"])
        assert "llama3.2 is on the volume" in whole_log(runner, pod.metadata.name, namespace)
        tags = ollama_api(ollama_url, "/api/tags")
        assert [m["name"] for m in tags["models"]] == ["llama3.2:latest"]

        targets = [
            *cloud_targets,
            {"provider": "ollama", "model": "llama3.2", "apiBase": ollama_url},
        ]
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            ROUTE_PLURAL,
            ROUTE,
            {"spec": {"models": [{"name": "smart", "targets": targets}]}},
        )
        config_hash = render_manifest(read_route(custom, namespace)).config_hash
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
        assert not ollama_api(ollama_url, "/api/ps")["models"], "nothing loaded before a request"
        reply = gateway.chat.completions.create(
            model="smart", messages=[{"role": "user", "content": "Hello"}]
        )
        # Words from the tiny model, cut at its num_predict: it never ends an answer itself.
        assert reply.choices[0].message.content.strip()
        assert reply.choices[0].finish_reason == "length"
        assert anthropic.inference_requests(), "the first cloud was tried"
        assert openai_.inference_requests(), "the second cloud was tried"
        loaded = [m["name"] for m in ollama_api(ollama_url, "/api/ps")["models"]]
        assert loaded == ["llama3.2:latest"], "the real Ollama loaded the model to answer"

        chunks = list(
            gateway.chat.completions.create(
                model="smart", messages=[{"role": "user", "content": "Stream it"}], stream=True
            )
        )
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert len(chunks) > 2 and streamed.strip()

        # Embeddings from the same server and model (a client in the cluster asks it directly:
        # the gateway's ollama_chat/ route is for chat).
        embedded = ollama_api(ollama_url, "/api/embed", {"model": "llama3.2", "input": "hi"})
        (vector,) = embedded["embeddings"]
        assert len(vector) == tinymodel.EMBEDDING

    # The runner is gone, and with it Ollama: presence is Unknown, not guessed.
    state = observe_ollama(api, parse_route(read_route(custom, namespace)))
    assert state is not None
    assert state.models == [{"name": "llama3.2", "present": "Unknown"}]


def test_a_model_no_registry_serves_keeps_the_pod_unready(
    cluster, apis, namespace, bound_volume
) -> None:
    """The real pull of a model that cannot be pulled fails: the container exits, restarts,
    never gets Ready, and OllamaReady=False names the model."""
    core, apps, custom = apis
    models = ["llama3.2", UNPULLABLE_MODEL]
    create_route(
        custom,
        namespace,
        manifest({"models": models, "storage": {"size": "5Gi", "storageClassName": ""}}),
    )
    with ProcessRunner(
        api_client=cluster.api_client(), namespace=namespace, ollama_models=["llama3.2"]
    ) as runner:
        pod = wait_ollama_pod(core, namespace)

        # The operator sees the crash loop on its periodic Ollama refresh (a container's state
        # changes no StatefulSet field it watches).
        # Before the crash loop the pod may wait for its volume's binding, which OllamaReady
        # reports too: wait for the failed pull itself.
        def failed_pull() -> dict | None:
            route = read_route(custom, namespace)
            ollama_ready = condition(route, "OllamaReady")
            if ollama_ready.get("reason") == "PodFailing" and "cannot pull" in ollama_ready.get(
                "message", ""
            ):
                return route
            return None

        failing = wait_for(
            failed_pull,
            timeout=150,
            what="the crash loop in OllamaReady",
        )
        assert condition(failing, "OllamaReady")["status"] == "False"
        message = condition(failing, "OllamaReady")["message"]
        assert f"cannot pull {UNPULLABLE_MODEL}" in message
        assert "pull model manifest" in message  # Ollama's own reason
        assert "CrashLoopBackOff" in message
        pod = core.read_namespaced_pod(pod.metadata.name, namespace)
        assert not pod_ready(pod)
        assert not apps.read_namespaced_stateful_set(OLLAMA, namespace).status.ready_replicas
        # The present model was skipped; Ollama's own error is in the container's log.
        log_text = whole_log(runner, pod.metadata.name, namespace)
        assert "llama3.2 is on the volume" in log_text
        assert "Error: pull model manifest" in log_text


def test_the_models_outlive_the_route_on_the_retained_volume(
    cluster, apis, namespace, bound_volume, tmp_path
) -> None:
    """Deleting the route leaves the claim; a new route of the same name gets it back, and
    its Ollama finds the model there without pulling."""
    core, apps, custom = apis
    spec = {"models": ["llama3.2"], "storage": {"size": "5Gi", "storageClassName": ""}}
    with ProcessRunner(
        api_client=cluster.api_client(), namespace=namespace, workdir=tmp_path
    ) as runner:
        # Volumes start empty here: the model is put on this one, as an earlier pull would.
        tinymodel.create_models(runner.volume_dir(namespace, CLAIM), ["llama3.2"])
        create_route(custom, namespace, manifest(spec))
        first = wait_ollama_pod(core, namespace)
        wait_models_ready(custom, namespace, ["llama3.2"])

        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, ROUTE_PLURAL, ROUTE)
        runner.wait_stopped(first.metadata.name, timeout=60, namespace=namespace)
        wait_for(
            lambda: not apps.list_namespaced_stateful_set(namespace).items,
            timeout=90,
            what="garbage collection of the StatefulSet",
        )
        claim = core.read_namespaced_persistent_volume_claim(CLAIM, namespace)
        assert claim.metadata.deletion_timestamp is None

        create_route(custom, namespace, manifest(spec))
        second = wait_ollama_pod(core, namespace)
        assert second.metadata.uid != first.metadata.uid
        wait_models_ready(custom, namespace, ["llama3.2"])
        assert core.read_namespaced_persistent_volume_claim(CLAIM, namespace).metadata.uid == (
            claim.metadata.uid
        )
        # Both pods (the log follows the pod's name) found the model on the volume.
        log_text = whole_log(runner, second.metadata.name, namespace)
        assert log_text.count("llama3.2 is on the volume") == 2
        assert "pulling llama3.2" not in log_text
