"""The Ollama part of a route's status: the OllamaReady condition and status.ollama.models.

A managed Ollama is Ready when its StatefulSet's pod is: the pod's readiness probe passes only
once every declared model is on the volume (payloads/ollama_pull.sh). Which models are present is
read from Ollama's own /api/tags, at the pod's IP (not the Service name: the operator may run
outside the cluster's DNS, and a headless Service lists only Ready pods), or at the external URL.
A model whose presence cannot be read is "Unknown", never guessed.

The pure parts (name normalisation, /api/tags -> presence, StatefulSet -> readiness) are
separate from the few calls that do I/O, and are unit-tested on their own.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from kubernetes import client

from llmroute import kube, reasons
from llmroute.api.pod_fields import parse_quantity
from llmroute.api.route import Route
from llmroute.conditions import set_condition
from llmroute.render.labels import ollama_selector
from llmroute.render.names import OLLAMA_PORT, ollama_name
from llmroute.render.ollama import CONTAINER

CONDITION: Final = "OllamaReady"
TAGS_PATH: Final = "/api/tags"
TAGS_TIMEOUT_SECONDS: Final = 2.0
MAX_TAGS_BYTES: Final = 8 * 1024 * 1024
# Ollama's default registry and namespace: `llama3.2` is registry.ollama.ai/library/llama3.2.
DEFAULT_REGISTRY: Final = "registry.ollama.ai"
DEFAULT_NAMESPACE: Final = "library"
DEFAULT_TAG: Final = "latest"
# Container states that keep a pod from ever getting Ready without someone acting.
_STUCK_REASONS: Final = frozenset(
    {
        "CrashLoopBackOff",
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)

Presence = dict[str, str]  # {"name": ..., "present": "True" | "False" | "Unknown"}
FetchTags = Callable[[str], Mapping[str, Any]]


# -- pure: names and presence --------------------------------------------------------------


def normalise_model_name(name: str) -> str:
    """Ollama's identity of a model name: `llama3.2` == `llama3.2:latest` ==
    `registry.ollama.ai/library/llama3.2:latest`; names compare case-insensitively."""
    name = name.strip().lower()
    head, _, last = name.rpartition("/")
    if ":" not in last:
        last = f"{last}:{DEFAULT_TAG}"
    parts = head.split("/") if head else []
    if parts and parts[0] == DEFAULT_REGISTRY:
        parts = parts[1:]
    if parts == [DEFAULT_NAMESPACE]:
        parts = []
    return "/".join([*parts, last])


def tag_names(tags: Mapping[str, Any]) -> set[str]:
    """The normalised names of the models an /api/tags answer lists."""
    models = tags.get("models")
    if not isinstance(models, list):
        raise ValueError("not an Ollama /api/tags answer: no models list")
    names = set()
    for entry in models:
        if not isinstance(entry, Mapping):
            continue
        for key in ("name", "model"):
            value = entry.get(key)
            if isinstance(value, str) and value:
                names.add(normalise_model_name(value))
    return names


def presence_from_tags(tags: Mapping[str, Any], wanted: Sequence[str]) -> list[Presence]:
    """status.ollama.models from an /api/tags answer, in the order of `wanted`."""
    present = tag_names(tags)
    return [
        {"name": name, "present": "True" if normalise_model_name(name) in present else "False"}
        for name in wanted
    ]


def unknown_presence(wanted: Sequence[str]) -> list[Presence]:
    return [{"name": name, "present": "Unknown"} for name in wanted]


def wanted_models(route: Route) -> list[str]:
    """The models the route's Ollama must hold: spec.ollama.models, then the models of the
    ollama targets it serves (those without apiBase) that the list does not name."""
    declared = list(route.ollama.models) if route.ollama is not None else []
    seen = {normalise_model_name(m) for m in declared}
    for model in route.models:
        for target in model.targets:
            if target.provider == "ollama" and target.api_base is None:
                key = normalise_model_name(target.model)
                if key not in seen:
                    seen.add(key)
                    declared.append(target.model)
    return declared


# -- pure: readiness ------------------------------------------------------------------------


@dataclass(frozen=True)
class OllamaState:
    """What the status says about the route's Ollama."""

    status: bool | None  # OllamaReady: True, False, or None for Unknown
    reason: str
    message: str
    models: list[Presence] = field(default_factory=list)  # status.ollama.models

    def status_field(self) -> dict[str, Any]:
        """The value of status.ollama."""
        return {"models": list(self.models)}


def statefulset_readiness(statefulset: Mapping[str, Any] | None) -> tuple[bool | None, str, str]:
    """(status, reason, message) of OllamaReady from the StatefulSet alone."""
    if statefulset is None:
        return False, reasons.NO_STATEFULSET, "the Ollama StatefulSet does not exist"
    meta = statefulset.get("metadata") or {}
    spec = statefulset.get("spec") or {}
    status = statefulset.get("status") or {}
    wanted = spec.get("replicas", 1)
    if status.get("observedGeneration", 0) < meta.get("generation", 0):
        return (
            None,
            reasons.PROGRESSING,
            "the StatefulSet controller has not seen the latest spec yet",
        )
    ready = status.get("readyReplicas", 0)
    updated = status.get("updatedReplicas", 0)
    if ready >= wanted and updated >= wanted:
        return True, reasons.READY, f"{ready}/{wanted} Ollama pods ready with every declared model"
    return (
        False,
        reasons.NOT_READY,
        f"{ready}/{wanted} Ollama pods ready: starting, or pulling the declared models",
    )


def pod_problem(pod: Mapping[str, Any]) -> str | None:
    """Why an Ollama pod does not get Ready, when it says so: a failed pull, an image that
    cannot be pulled, a volume that cannot be bound. None while it is simply progressing."""
    name = (pod.get("metadata") or {}).get("name", "")
    status = pod.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            why = condition.get("message") or condition.get("reason")
            return f"pod {name} is not scheduled: {why}"
    container = next(
        (c for c in status.get("containerStatuses") or [] if c.get("name") == CONTAINER), None
    )
    if container is None:
        return None
    waiting = (container.get("state") or {}).get("waiting") or {}
    terminated = (container.get("lastState") or {}).get("terminated") or {}
    if waiting.get("reason") not in _STUCK_REASONS:
        return None
    detail = (terminated.get("message") or "").strip() or waiting.get("message") or ""
    restarts = container.get("restartCount", 0)
    text = f"pod {name}: container {CONTAINER} {waiting['reason']}"
    if restarts:
        text += f" after {restarts} restarts"
    return f"{text}: {detail}" if detail else text


def ollama_state(
    *,
    managed: bool,
    statefulset: Mapping[str, Any] | None,
    pods: Iterable[Mapping[str, Any]],
    presence: list[Presence],
    unreachable: str | None,
) -> OllamaState:
    """OllamaReady and status.ollama.models from what was observed.

    managed: the route runs its own Ollama (else an external one). presence: per wanted model;
    all "Unknown" when Ollama could not be asked, and then `unreachable` says why.
    """
    missing = [p["name"] for p in presence if p["present"] == "False"]
    if not managed:
        if unreachable is not None:
            return OllamaState(
                None, reasons.UNREACHABLE, f"the external Ollama: {unreachable}", presence
            )
        if missing:
            return OllamaState(
                False,
                reasons.MODEL_MISSING,
                f"the external Ollama does not hold {', '.join(missing)}",
                presence,
            )
        return OllamaState(
            True, reasons.REACHABLE, "the external Ollama holds every model", presence
        )
    status, reason, message = statefulset_readiness(statefulset)
    if status is not True:
        problems = [p for p in (pod_problem(pod) for pod in pods) if p]
        if problems:
            return OllamaState(False, reasons.POD_FAILING, "; ".join(problems), presence)
        return OllamaState(status, reason, message, presence)
    if missing:
        return OllamaState(
            False,
            reasons.MODEL_MISSING,
            f"not on the Ollama volume: {', '.join(missing)} "
            "(every model an ollama target uses belongs in spec.ollama.models)",
            presence,
        )
    if unreachable is not None:
        message += f"; which models are present is unknown ({unreachable})"
    return OllamaState(True, reason, message, presence)


def with_ollama_condition(
    conditions: list[dict], state: OllamaState | None, generation: int | None
) -> list[dict]:
    """`conditions` with OllamaReady set from `state`, or removed when there is no Ollama."""
    if state is None:
        return [c for c in conditions if c.get("type") != CONDITION]
    return set_condition(
        conditions, CONDITION, state.status, state.reason, state.message, generation
    )


# -- pure: the volume claim template, which Kubernetes does not let change -------------------


def _claim_shape(template: Mapping[str, Any]) -> tuple[Any, ...]:
    spec = template.get("spec") or {}
    storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    return (
        (template.get("metadata") or {}).get("name"),
        tuple(sorted(spec.get("accessModes") or ())),
        parse_quantity(storage) if storage is not None else None,
        spec.get("storageClassName"),
    )


def _describe_claim(template: Mapping[str, Any]) -> str:
    spec = template.get("spec") or {}
    storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    if "storageClassName" not in spec:
        storage_class = "the default class"
    elif spec["storageClassName"] == "":
        storage_class = "no class"
    else:
        storage_class = f"class {spec['storageClassName']}"
    return f"{storage} of {storage_class}"


def keep_claim_templates(
    desired: dict[str, Any], existing: Mapping[str, Any] | None
) -> tuple[dict[str, Any], str | None]:
    """The StatefulSet to apply, and a message when the spec asks for a volume change.

    A StatefulSet's volumeClaimTemplates cannot change once it exists: the API server refuses
    the whole update, which would also hold back every other change (models, resources).
    So the existing templates are applied as they are, and the difference is reported.
    """
    if existing is None:
        return desired, None
    current = [
        {k: v for k, v in t.items() if k != "status"}
        for t in (existing.get("spec") or {}).get("volumeClaimTemplates") or []
    ]
    wanted = desired["spec"].get("volumeClaimTemplates") or []
    if [_claim_shape(t) for t in current] == [_claim_shape(t) for t in wanted] and all(
        (c.get("metadata") or {}).get("labels") == (w.get("metadata") or {}).get("labels")
        for c, w in zip(current, wanted, strict=True)
    ):
        return desired, None
    kept = {**desired, "spec": {**desired["spec"], "volumeClaimTemplates": current}}
    if [_claim_shape(t) for t in current] == [_claim_shape(t) for t in wanted]:
        return kept, None  # only labels differ: nothing the user asked for is lost
    message = (
        "spec.ollama.storage cannot change once the volume exists: it stays "
        f"{', '.join(_describe_claim(t) for t in current)} (asked: "
        f"{', '.join(_describe_claim(t) for t in wanted)}); docs/ollama.md#storage says how "
        "to resize or move it"
    )
    return kept, message


# -- I/O ------------------------------------------------------------------------------------

# Pod addresses are reached directly: an HTTP proxy from the environment would not route them.
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# An external Ollama is reached as any other outbound call of the operator.
_default = urllib.request.build_opener()


def fetch_tags(url: str, *, direct: bool = True, timeout: float = TAGS_TIMEOUT_SECONDS) -> Any:
    """GET <url>/api/tags as JSON; raises OSError or ValueError."""
    opener = _direct if direct else _default
    request = urllib.request.Request(
        url.rstrip("/") + TAGS_PATH, headers={"Accept": "application/json"}
    )
    with opener.open(request, timeout=timeout) as response:
        body = response.read(MAX_TAGS_BYTES + 1)
    if len(body) > MAX_TAGS_BYTES:
        raise ValueError(f"/api/tags answer larger than {MAX_TAGS_BYTES} bytes")
    return json.loads(body)


def list_ollama_pods(api: client.ApiClient, namespace: str, route_name: str) -> list[dict]:
    selector = ",".join(f"{k}={v}" for k, v in ollama_selector(route_name).items())
    response = client.CoreV1Api(api).list_namespaced_pod(
        namespace, label_selector=selector, _preload_content=False
    )
    items = json.loads(response.data).get("items") or []
    return sorted(items, key=lambda p: p["metadata"]["name"])


def _pod_url(pod: Mapping[str, Any]) -> str | None:
    status = pod.get("status") or {}
    if (pod.get("metadata") or {}).get("deletionTimestamp") or status.get("phase") != "Running":
        return None
    ip = status.get("podIP")
    if not ip:
        return None
    host = f"[{ip}]" if ":" in ip else ip
    return f"http://{host}:{OLLAMA_PORT}"


def read_presence(
    urls: Sequence[str], wanted: Sequence[str], fetch: FetchTags
) -> tuple[list[Presence], str | None]:
    """Presence from the first Ollama in `urls` that answers; all Unknown and the reason when
    none does."""
    errors = []
    for url in urls:
        try:
            return presence_from_tags(fetch(url), wanted), None
        except (OSError, ValueError) as error:
            errors.append(f"{url}{TAGS_PATH}: {error}")
    return unknown_presence(wanted), "; ".join(errors) or "no running Ollama pod to ask"


def observe_ollama(
    api: client.ApiClient,
    route: Route,
    statefulset: Mapping[str, Any] | None = None,
    *,
    storage_message: str | None = None,
    fetch: FetchTags | None = None,
) -> OllamaState | None:
    """The Ollama part of the route's status; None when the route has no Ollama.

    route: the parsed LLMRoute.
    statefulset: the StatefulSet as just applied, if at hand; read from the API otherwise.
    storage_message: what keep_claim_templates reported, added to the condition's message.
    fetch: reads a base URL's /api/tags (tests pass their own).
    """
    parsed = route
    wanted = wanted_models(parsed)
    external = parsed.ollama_external_url
    if external is not None:
        presence, unreachable = read_presence(
            [external], wanted, fetch or (lambda url: fetch_tags(url, direct=False))
        )
        return ollama_state(
            managed=False, statefulset=None, pods=(), presence=presence, unreachable=unreachable
        )
    if parsed.ollama is None:
        return None
    if statefulset is None:
        statefulset = kube.get(
            api, "apps/v1", "StatefulSet", parsed.namespace, ollama_name(parsed.name)
        )
    pods = list_ollama_pods(api, parsed.namespace, parsed.name)
    urls = [url for url in (_pod_url(p) for p in pods) if url]
    presence, unreachable = read_presence(urls, wanted, fetch or fetch_tags)
    state = ollama_state(
        managed=True,
        statefulset=statefulset,
        pods=pods,
        presence=presence,
        unreachable=unreachable,
    )
    if storage_message:
        state = replace(state, message=f"{state.message}; {storage_message}")
    return state
