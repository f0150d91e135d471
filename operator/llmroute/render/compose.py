"""An LLMRoute as a Compose file: the same gateway on one machine, without a cluster.

`llmroute render --format compose` prints it. The services are translations of the workloads
render_route produces: the proxy Deployment (image, args, environment, the files of its
ConfigMap, its key files, its security settings) and, when the route manages one, the Ollama
StatefulSet (the same container, which pulls the declared models before it reports healthy,
and a named volume for the models). The LiteLLM config is the one the operator would run;
only the managed Ollama's address changes, to the Compose service's.

No secret value is written: each value the cluster takes from a Secret comes from a variable
of the environment `docker compose` runs in (`${ANTHROPIC_API_KEY}`), named after what it
holds. Whatever a container reads from files goes inline into the Compose file (top-level
`configs` with `content`, `secrets` with `environment`), so one file is enough; Docker
Compose 2.23.1 or newer reads it.

Pure: a typed route (and its quota effects) in, a dict out.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import yaml

from llmroute.api.quota import QuotaEffect
from llmroute.api.route import Route, SecretKeyRef
from llmroute.render import render_route
from llmroute.render.credentials import MASTER_KEY_ENV
from llmroute.render.names import OLLAMA_PORT, PROXY_PORT, managed_ollama_url
from llmroute.render.proxy import CONFIG_FILE, master_key_ref
from llmroute.render.redis_connection import redis_connection

PROXY_SERVICE: Final = "litellm"
OLLAMA_SERVICE: Final = "ollama"
OLLAMA_VOLUME: Final = "ollama-models"
COMPOSE_OLLAMA_URL: Final = f"http://{OLLAMA_SERVICE}:{OLLAMA_PORT}"
# Published on the loopback interface only: the gateway is for this machine unless the user
# widens it on purpose.
PUBLISHED_PORT: Final = f"127.0.0.1:{PROXY_PORT}:{PROXY_PORT}"
# Key files of an unprivileged container: readable whatever owner the engine gives the file
# (Compose's default for secrets, 0400 and root, would lock the proxy out).
SECRET_FILE_MODE: Final = "0444"
# Pulling models takes minutes to hours; until the check passes the first time, failures do
# not count, and Compose reports the service healthy as soon as it does pass.
OLLAMA_START_PERIOD: Final = "6h"

# The variable each provider's own tooling reads its API key from.
PROVIDER_KEY_VARIABLES: Final = {
    "anthropic": "ANTHROPIC_API_KEY",
    "openai": "OPENAI_API_KEY",
    "gemini": "GEMINI_API_KEY",
    "azure": "AZURE_API_KEY",
    "bedrock": "AWS_BEARER_TOKEN_BEDROCK",
    "vertex_ai": "VERTEXAI_API_KEY",
    "mistral": "MISTRAL_API_KEY",
    "groq": "GROQ_API_KEY",
    "ollama": "OLLAMA_API_KEY",
    "openai-compatible": "OPENAI_COMPATIBLE_API_KEY",
}
REDIS_PASSWORD_VARIABLE: Final = "REDIS_PASSWORD"


@dataclass(frozen=True)
class ComposeVariable:
    """A variable the Compose file reads from the environment, in place of a Secret key."""

    name: str  # the environment variable
    secret: str  # the Secret the route references for it in a cluster
    key: str  # the key inside that Secret
    required: bool
    used_for: str  # what needs it, e.g. "spec.models[0].targets[0].apiKeySecretRef"


@dataclass(frozen=True)
class ComposeProject:
    document: dict[str, Any]  # the Compose file, as a dict
    variables: list[ComposeVariable]  # what to export before `docker compose up`, by name


def render_compose(route: Route, *, quotas: Sequence[QuotaEffect] = ()) -> ComposeProject:
    """The Compose project that runs `route` (parsed by llmroute.api.route) on one machine."""
    parsed = _one_replica(route)
    rendered = render_route(parsed, quotas=quotas)
    deployment = _only(rendered.objects, "Deployment")
    config_map = _only(rendered.objects, "ConfigMap", name=_config_map_name(deployment))
    statefulsets = [o for o in rendered.objects if o["kind"] == "StatefulSet"]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    variables = _variables(parsed, container, pod["volumes"])

    files = dict(config_map["data"])
    if statefulsets:
        files[CONFIG_FILE] = _dump_config(_compose_config(rendered.config, parsed))
    translation = _Translation(variables)
    proxy = translation.service(pod, container, files=files)
    proxy["ports"] = [PUBLISHED_PORT]
    # host.docker.internal reaches services of the machine itself (an Ollama started outside
    # Compose, say) on Linux too.
    proxy["extra_hosts"] = ["host.docker.internal:host-gateway"]
    proxy["restart"] = "unless-stopped"
    proxy["healthcheck"] = _healthcheck(
        container["readinessProbe"], start_period=_startup_seconds(container)
    )

    services: dict[str, Any] = {PROXY_SERVICE: proxy}
    document: dict[str, Any] = {"name": parsed.name, "services": services}
    if statefulsets:
        (statefulset,) = statefulsets
        services[OLLAMA_SERVICE] = _ollama_service(translation, statefulset)
        # The Ollama turns healthy once every declared model is on its volume, as its pod
        # turns Ready in a cluster.
        proxy["depends_on"] = {OLLAMA_SERVICE: {"condition": "service_healthy"}}
        document["volumes"] = {OLLAMA_VOLUME: {}}
    document["configs"] = translation.configs
    if translation.secrets:
        document["secrets"] = translation.secrets
    return ComposeProject(document=document, variables=variables)


def _one_replica(route: Route) -> Route:
    """The route with one proxy replica and no autoscaling: Compose runs one proxy.

    The rendered rpm/tpm limits are shares of a cluster-wide limit, one per LiteLLM process;
    with one replica the processes are just its workers.
    """
    proxy = route.proxy
    autoscaling = dataclasses.replace(proxy.autoscaling, enabled=False)
    return dataclasses.replace(
        route, proxy=dataclasses.replace(proxy, replicas=1, autoscaling=autoscaling)
    )


def _config_map_name(deployment: Mapping[str, Any]) -> str:
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    return next(v["configMap"]["name"] for v in volumes if "configMap" in v)


def _only(objects: Sequence[Mapping[str, Any]], kind: str, name: str | None = None) -> dict:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"].get("name"))]
    if len(found) != 1:
        raise ValueError(f"render_route returned {len(found)} {kind} objects, expected one")
    return dict(found[0])


def _escape(value: str) -> str:
    # Compose interpolates ${...} in every value of the file, inline content included.
    return value.replace("$", "$$")


# -- pod -> service ---------------------------------------------------------------------------


class _Translation:
    """Pod specs to Compose services; collects the top-level configs and secrets they use."""

    def __init__(self, variables: Sequence[ComposeVariable]) -> None:
        self.by_ref = {(v.secret, v.key): v for v in variables}
        self.configs: dict[str, Any] = {}
        self.secrets: dict[str, Any] = {}

    def service(
        self,
        pod: Mapping[str, Any],
        container: Mapping[str, Any],
        *,
        files: Mapping[str, str] | None = None,
        named_volumes: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """The container as a service.

        files: the content of each file of the pod's ConfigMap volume.
        named_volumes: pod volume (or volume claim) name -> the Compose volume that replaces it.
        """
        service: dict[str, Any] = {"image": container["image"]}
        if container.get("command"):
            service["entrypoint"] = [_escape(c) for c in container["command"]]
        if container.get("args"):
            service["command"] = [_escape(a) for a in container["args"]]
        service["environment"] = self._environment(container.get("env") or ())
        configs: list[dict[str, Any]] = []
        secrets: list[dict[str, Any]] = []
        tmpfs: list[str] = []
        volumes: list[str] = []
        pod_volumes = {v["name"]: v for v in pod.get("volumes") or ()}
        for mount in container.get("volumeMounts") or ():
            path = mount["mountPath"]
            volume = pod_volumes.get(mount["name"], {})
            if mount["name"] in (named_volumes or {}):
                volumes.append(f"{(named_volumes or {})[mount['name']]}:{path}")
            elif "configMap" in volume:
                for name, content in (files or {}).items():
                    self.configs[name] = {"content": _escape(content)}
                    configs.append({"source": name, "target": f"{path}/{name}"})
            elif "secret" in volume:
                secret = volume["secret"]
                for item in secret.get("items") or ():
                    variable = self.by_ref[(secret["secretName"], item["key"])]
                    self.secrets[mount["name"]] = {"environment": variable.name}
                    secrets.append(
                        {
                            "source": mount["name"],
                            "target": f"{path}/{item['path']}",
                            "mode": SECRET_FILE_MODE,
                        }
                    )
            elif "emptyDir" in volume:
                tmpfs.append(path)
        if configs:
            service["configs"] = configs
        if secrets:
            service["secrets"] = secrets
        if tmpfs:
            service["tmpfs"] = tmpfs
        if volumes:
            service["volumes"] = volumes
        # A new named volume belongs to root, and Compose has no fsGroup to hand it to the
        # pod's user: a container that writes to one keeps the image's user.
        service.update(_security(pod, container, keep_image_user=bool(volumes)))
        return service

    def _environment(self, env: Sequence[Mapping[str, Any]]) -> dict[str, str]:
        environment: dict[str, str] = {}
        for item in env:
            secret_ref = (item.get("valueFrom") or {}).get("secretKeyRef")
            if secret_ref is not None:
                variable = self.by_ref[(secret_ref["name"], secret_ref["key"])]
                environment[item["name"]] = _interpolation(variable)
            else:
                environment[item["name"]] = _escape(str(item.get("value", "")))
        return environment


def _security(
    pod: Mapping[str, Any], container: Mapping[str, Any], *, keep_image_user: bool
) -> dict[str, Any]:
    """The pod's security settings in Compose's terms."""
    settings: dict[str, Any] = {}
    pod_context = pod.get("securityContext") or {}
    context = container.get("securityContext") or {}
    user = pod_context.get("runAsUser")
    if user is not None and not keep_image_user:
        group = pod_context.get("runAsGroup")
        settings["user"] = f"{user}:{group}" if group is not None else str(user)
    if context.get("readOnlyRootFilesystem"):
        settings["read_only"] = True
    drop = (context.get("capabilities") or {}).get("drop")
    if drop:
        settings["cap_drop"] = list(drop)
    if context.get("allowPrivilegeEscalation") is False:
        settings["security_opt"] = ["no-new-privileges:true"]
    return settings


def _startup_seconds(container: Mapping[str, Any]) -> int:
    startup = container.get("startupProbe") or {}
    return int(startup.get("periodSeconds", 10)) * int(startup.get("failureThreshold", 3))


def _healthcheck(probe: Mapping[str, Any], *, start_period: int | str) -> dict[str, Any]:
    """A readiness probe as a Compose healthcheck."""
    if "exec" in probe:
        test = ["CMD", *probe["exec"]["command"]]
    else:
        # Only the proxy has an HTTP readiness probe, and its image has Python (LiteLLM is
        # Python), not necessarily curl.
        url = f"http://127.0.0.1:{PROXY_PORT}{probe['httpGet']['path']}"
        test = ["CMD", "python", "-c", f"import urllib.request; urllib.request.urlopen({url!r})"]
    return {
        "test": test,
        "interval": f"{probe.get('periodSeconds', 10)}s",
        "timeout": f"{probe.get('timeoutSeconds', 5)}s",
        "retries": int(probe.get("failureThreshold", 3)),
        "start_period": f"{start_period}s" if isinstance(start_period, int) else start_period,
    }


# -- Ollama -----------------------------------------------------------------------------------


def _ollama_service(translation: _Translation, statefulset: Mapping[str, Any]) -> dict[str, Any]:
    template = statefulset["spec"]["template"]["spec"]
    container = template["containers"][0]
    claims = [c["metadata"]["name"] for c in statefulset["spec"].get("volumeClaimTemplates") or ()]
    service = translation.service(
        template, container, named_volumes={claim: OLLAMA_VOLUME for claim in claims}
    )
    service["healthcheck"] = _healthcheck(
        container["readinessProbe"], start_period=OLLAMA_START_PERIOD
    )
    service["restart"] = "unless-stopped"
    devices = _gpu_devices((container.get("resources") or {}).get("limits") or {})
    if devices:
        service["deploy"] = {"resources": {"reservations": {"devices": devices}}}
    return service


def _gpu_devices(limits: Mapping[str, Any]) -> list[dict[str, Any]]:
    devices = []
    for resource, count in limits.items():
        if resource.endswith("/gpu"):
            device: dict[str, Any] = {"count": int(count), "capabilities": ["gpu"]}
            if resource.startswith("nvidia.com/"):
                device = {"driver": "nvidia", **device}
            devices.append(device)
    return devices


def _compose_config(config: Mapping[str, Any], route: Route) -> dict[str, Any]:
    """The LiteLLM config with the managed Ollama's cluster address swapped for the service's."""
    cluster_url = managed_ollama_url(route.name, route.namespace)
    config = copy.deepcopy(dict(config))
    for deployment in config.get("model_list") or ():
        params = deployment.get("litellm_params") or {}
        if params.get("api_base") == cluster_url:
            params["api_base"] = COMPOSE_OLLAMA_URL
    return config


def _dump_config(config: Mapping[str, Any]) -> str:
    # As render_route writes config.yaml into the ConfigMap.
    return yaml.safe_dump(
        dict(config), sort_keys=False, default_flow_style=False, allow_unicode=True
    )


# -- variables --------------------------------------------------------------------------------


def _env_name(text: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", text.upper()).strip("_") or "VALUE"


def _preferred_names(route: Route, master: SecretKeyRef) -> dict[tuple[str, str], str]:
    """(Secret, key) -> the variable name its first use suggests."""
    wanted: dict[tuple[str, str], str] = {}
    wanted.setdefault((master.name, master.key), MASTER_KEY_ENV)
    for model in route.models:
        for target in model.targets:
            if target.api_key_ref is not None:
                ref = (target.api_key_ref.name, target.api_key_ref.key)
                wanted.setdefault(ref, PROVIDER_KEY_VARIABLES[target.provider])
    redis = redis_connection(route)
    if redis is not None and redis.password_ref is not None:
        ref = (redis.password_ref.name, redis.password_ref.key)
        wanted.setdefault(ref, REDIS_PASSWORD_VARIABLE)
    for caller in route.callers:
        ref = (caller.key_ref.name, caller.key_ref.key)
        wanted.setdefault(ref, f"LLMROUTE_CALLER_{_env_name(caller.name)}")
    return wanted


def _uses(route: Route, master: SecretKeyRef) -> dict[tuple[str, str], str]:
    """(Secret, key) -> the first spec field that references it ((Secret, "") for a whole one)."""
    uses: dict[tuple[str, str], str] = {}
    uses[(master.name, master.key)] = (
        "spec.auth.masterKeySecretRef"
        if route.master_key_ref is not None
        else "the master key (generated in a cluster)"
    )
    for model in route.models:
        for target in model.targets:
            if target.api_key_ref is not None:
                ref = (target.api_key_ref.name, target.api_key_ref.key)
                uses.setdefault(ref, f"{target.path}.apiKeySecretRef")
            if target.credentials_secret is not None:
                ref = (target.credentials_secret, "")
                uses.setdefault(ref, f"{target.path}.credentialsSecretRef")
    redis = redis_connection(route)
    if redis is not None and redis.password_ref is not None:
        ref = (redis.password_ref.name, redis.password_ref.key)
        uses.setdefault(
            ref,
            "spec.redis.external.passwordSecretRef"
            if route.redis is not None and route.redis.external is not None
            else "the managed Redis's password (generated in a cluster)",
        )
    for caller in route.callers:
        ref = (caller.key_ref.name, caller.key_ref.key)
        uses.setdefault(ref, f"{caller.path}.keySecretRef")
    return uses


def _variables(
    route: Route, container: Mapping[str, Any], volumes: Sequence[Mapping[str, Any]]
) -> list[ComposeVariable]:
    """One variable per (Secret, key) the proxy reads, named after what the key is for.

    A provider key is ANTHROPIC_API_KEY and the like; a multi-value credential keeps the key's
    own name (AWS_ACCESS_KEY_ID); the master key is LLMROUTE_MASTER_KEY, a caller's key
    LLMROUTE_CALLER_<NAME>. Two different keys that would get the same name are named after
    their Secret and key instead.
    """
    master = master_key_ref(route, None)
    refs: dict[tuple[str, str], bool] = {}  # (Secret, key) -> required
    for env in container.get("env") or ():
        secret_ref = (env.get("valueFrom") or {}).get("secretKeyRef")
        if secret_ref is not None:
            ref = (secret_ref["name"], secret_ref["key"])
            refs[ref] = refs.get(ref, False) or not secret_ref.get("optional", False)
    for volume in volumes:
        secret = volume.get("secret")
        for item in (secret or {}).get("items") or ():
            refs[(secret["secretName"], item["key"])] = True

    preferred = _preferred_names(route, master)
    candidates = {ref: preferred.get(ref) or _env_name(ref[1]) for ref in refs}
    claims: dict[str, int] = {}
    for name in candidates.values():
        claims[name] = claims.get(name, 0) + 1
    names = {
        ref: _env_name(f"{ref[0]}_{ref[1]}") if claims[name] > 1 else name
        for ref, name in candidates.items()
    }
    if len(set(names.values())) != len(names):
        # Sanitizing can still join two pairs ("a-b"/"c" and "a"/"b-c"): a hash keeps them apart.
        names = {
            ref: f"{name}_{hashlib.sha256('/'.join(ref).encode()).hexdigest()[:8].upper()}"
            for ref, name in names.items()
        }

    uses = _uses(route, master)
    variables = [
        ComposeVariable(
            name=names[ref],
            secret=ref[0],
            key=ref[1],
            required=required,
            used_for=uses.get(ref) or uses.get((ref[0], ""), ""),
        )
        for ref, required in refs.items()
    ]
    return sorted(variables, key=lambda v: v.name)


def _interpolation(variable: ComposeVariable) -> str:
    if not variable.required:
        return f"${{{variable.name}:-}}"
    # Compose stops with this message when the variable is unset or empty.
    hint = f"export it (in a cluster: Secret {variable.secret}, key {variable.key})"
    return f"${{{variable.name}:?{hint}}}"
