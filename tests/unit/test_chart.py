"""The Helm chart, checked with the real helm binary: lint, render, RBAC, CRD copies, values."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import llmroute
from built_tools import require_tools
from llmroute.api.validation import validate
from llmroute.render.labels import OPERATOR_APP_NAME
from localcluster import tools

REPO = tools.REPO_ROOT
CHART = REPO / "charts" / "llmroute"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
# The chart's own file in its crds/ folder; every other file there is a copy of crds/.
CHART_OWNED_CRDS = {"kopf.dev_peerings.yaml"}
WRITE_VERBS = ["get", "list", "watch", "create", "patch", "update"]
# What the operator may do with the namespaced objects it reconciles, in its ClusterRole or in
# each Role. A change here is a change of the operator's privileges: review it as one.
NAMESPACED_RULES = [
    (["llmroute.dev"], ["llmroutes", "modelquotas"], ["get", "list", "watch", "patch", "update"]),
    (["llmroute.dev"], ["llmroutes/status", "modelquotas/status"], ["get", "patch", "update"]),
    (["llmroute.dev"], ["llmroutes/finalizers"], ["update"]),
    ([""], ["configmaps", "services"], WRITE_VERBS),
    (["apps"], ["deployments", "statefulsets"], WRITE_VERBS),
    (["networking.k8s.io"], ["networkpolicies"], WRITE_VERBS),
    (["policy"], ["poddisruptionbudgets"], WRITE_VERBS),
    (["autoscaling"], ["horizontalpodautoscalers"], WRITE_VERBS),
    # spec.expose: exactly these two kinds, nothing else of their API groups.
    (["networking.k8s.io"], ["ingresses"], WRITE_VERBS),
    (["gateway.networking.k8s.io"], ["httproutes"], WRITE_VERBS),
    # Referenced Secrets are read and watched; the generated master-key Secret is created once
    # and never written again.
    ([""], ["secrets"], ["get", "list", "watch", "create"]),
    # Pruning: the optional children a spec change makes unwanted.
    ([""], ["services"], ["delete"]),
    (["apps"], ["statefulsets"], ["delete"]),
    (["networking.k8s.io"], ["networkpolicies"], ["delete"]),
    (["policy"], ["poddisruptionbudgets"], ["delete"]),
    (["autoscaling"], ["horizontalpodautoscalers"], ["delete"]),
    (["networking.k8s.io"], ["ingresses"], ["delete"]),
    (["gateway.networking.k8s.io"], ["httproutes"], ["delete"]),
    ([""], ["pods"], ["get", "list", "watch"]),
    ([""], ["events"], ["create", "patch"]),
    (["events.k8s.io"], ["events"], ["create", "patch"]),
]
CRD_OBSERVATION = (["apiextensions.k8s.io"], ["customresourcedefinitions"], ["list", "watch"])
PEERING_VERBS = ["get", "list", "watch", "patch"]


@pytest.fixture(scope="module")
def helm_binary() -> Path:
    require_tools("helm")
    return tools.binary("helm")


@pytest.fixture(scope="module")
def helm(helm_binary: Path, tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("helm-home")
    # Helm keeps caches and repository settings under these; the tests share none of the user's.
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(helm_binary), *args], capture_output=True, text=True, env=env, timeout=120
        )
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}")
        return result

    return run


@pytest.fixture(scope="module")
def render(helm):
    def run(*args: str) -> list[dict]:
        out = helm("template", "rel", str(CHART), "--namespace", "ops", *args).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]

    return run


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict], kind: str) -> dict:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


def rule_tuples(role: dict) -> list[tuple[list[str], list[str], list[str]]]:
    return [(r["apiGroups"], r["resources"], r["verbs"]) for r in role["rules"]]


def container_args(docs: list[dict]) -> list[str]:
    return one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]


# -- lint and render -------------------------------------------------------------------


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=lambda v: v.name if v else "defaults")
def test_lint_strict(helm, values: Path | None) -> None:
    args = ["-f", str(values)] if values else []
    result = helm("lint", "--strict", str(CHART), *args)
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda v: v.name)
def test_template_renders(render, values: Path) -> None:
    docs = render("-f", str(values))
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "ServiceAccount", "Service", "Pod"} <= kinds
    for doc in docs:
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "llmroute", doc["kind"]


def test_ci_values_cover_every_mode() -> None:
    assert {v.name for v in CI_VALUES} == {
        "default-values.yaml",
        "namespaced-values.yaml",
        "ha-peering-values.yaml",
        "extras-on-values.yaml",
    }


def test_unknown_top_level_key_is_rejected(helm) -> None:
    for command in (["lint", "--strict", str(CHART)], ["template", "rel", str(CHART)]):
        result = helm(*command, "--set", "bogus=1", check=False)
        assert result.returncode != 0, command
        assert "bogus" in result.stdout + result.stderr


def test_unknown_nested_key_is_rejected(helm) -> None:
    result = helm("template", "rel", str(CHART), "--set", "image.tga=v1", check=False)
    assert result.returncode != 0
    assert "tga" in result.stderr


def release_notes(helm, *args: str) -> str:
    """The notes `helm install` prints (a client-side dry run renders them too)."""
    out = helm("install", "rel", str(CHART), "-n", "ops", "--dry-run=client", *args).stdout
    return out[out.index("NOTES:") :]


def test_notes_warn_while_the_image_is_the_unpublished_default(helm) -> None:
    default = yaml.safe_load((CHART / "values.yaml").read_text())["image"]["repository"]
    notes = release_notes(helm)
    assert notes.startswith("NOTES:\nWARNING: the operator image is the chart's default")
    assert f"{default}:{llmroute.__version__}" in notes
    assert f"bash hack/release.sh {llmroute.__version__}" in notes
    assert "--set image.repository=<registry>/llmroute" in notes
    # Also pinned by digest, the default repository has nothing to pull.
    assert "WARNING" in release_notes(helm, "--set", "image.digest=sha256:" + "0" * 64)


def test_notes_do_not_warn_about_an_image_of_ones_own(helm) -> None:
    notes = release_notes(helm, "--set", "image.repository=registry.example/team/llmroute")
    assert "WARNING" not in notes
    assert notes.startswith(f"NOTES:\nllmroute {llmroute.__version__} is installed")


def test_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == llmroute.__version__
    assert chart["version"] == llmroute.__version__


# -- CRDs ----------------------------------------------------------------------------------


def test_crds_are_byte_identical_copies_of_crds_dir() -> None:
    sources = {p.name: p.read_bytes() for p in (REPO / "crds").glob("*.yaml")}
    copies = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert sources, "no CRDs in crds/"
    stale = sorted(n for n in sources if copies.get(n) != sources[n])
    extra = sorted(set(copies) - set(sources) - CHART_OWNED_CRDS)
    assert not stale and not extra, (
        f"charts/llmroute/crds/ is out of date (differs: {stale}, not in crds/: {extra}); "
        "run `bash hack/sync-chart-crds.sh`"
    )


def test_chart_installs_the_kopf_peering_crds() -> None:
    docs = list(yaml.safe_load_all((CHART / "crds" / "kopf.dev_peerings.yaml").read_text()))
    assert {(d["spec"]["names"]["kind"], d["spec"]["scope"]) for d in docs} == {
        ("ClusterKopfPeering", "Cluster"),
        ("KopfPeering", "Namespaced"),
    }
    for doc in docs:
        assert doc["spec"]["group"] == "kopf.dev"
        assert [v["name"] for v in doc["spec"]["versions"]] == ["v1"]


def test_sync_script_restores_a_changed_copy(tmp_path: Path) -> None:
    # The script works on the checkout it lives in: run a copy of it in a scratch tree.
    (tmp_path / "hack").mkdir()
    (tmp_path / "crds").mkdir()
    (tmp_path / "charts" / "llmroute" / "crds").mkdir(parents=True)
    script = tmp_path / "hack" / "sync-chart-crds.sh"
    script.write_bytes((REPO / "hack" / "sync-chart-crds.sh").read_bytes())
    (tmp_path / "crds" / "a.yaml").write_text("kind: A\n")
    chart_crds = tmp_path / "charts" / "llmroute" / "crds"
    (chart_crds / "a.yaml").write_text("kind: stale\n")
    (chart_crds / "gone.yaml").write_text("kind: Gone\n")
    (chart_crds / "kopf.dev_peerings.yaml").write_text("kind: Kept\n")
    subprocess.run(["bash", str(script)], check=True, capture_output=True)
    assert sorted(p.name for p in chart_crds.iterdir()) == ["a.yaml", "kopf.dev_peerings.yaml"]
    assert (chart_crds / "a.yaml").read_text() == "kind: A\n"


# -- RBAC ----------------------------------------------------------------------------------


def all_renderings(render) -> Iterator[tuple[str, list[dict]]]:
    for values in CI_VALUES:
        yield values.name, render("-f", str(values))
    namespaced = CHART / "ci" / "namespaced-values.yaml"
    yield "namespaced+peering", render("-f", str(namespaced), "--set", "replicaCount=3")


def test_no_rbac_rule_has_a_wildcard(render) -> None:
    for name, docs in all_renderings(render):
        roles = by_kind(docs, "ClusterRole") + by_kind(docs, "Role")
        assert roles, name
        for role in roles:
            for rule in role["rules"]:
                for field in ("apiGroups", "resources", "verbs"):
                    assert not any("*" in item for item in rule[field]), (name, rule)
                assert "nonResourceURLs" not in rule and "resourceNames" not in rule


def test_cluster_wide_rbac(render) -> None:
    docs = render()
    role = one(docs, "ClusterRole")
    assert rule_tuples(role) == [*NAMESPACED_RULES, CRD_OBSERVATION]
    assert not by_kind(docs, "Role")
    binding = one(docs, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "rel-llmroute", "namespace": "ops"}
    ]


def test_namespaced_rbac(render) -> None:
    docs = render("--set", "watchNamespaces={team-a,team-b}")
    roles = by_kind(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert rule_tuples(role) == NAMESPACED_RULES
    bindings = by_kind(docs, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    # Only kopf's read-only observation of namespaces and CRDs is cluster-wide.
    observer = one(docs, "ClusterRole")
    assert rule_tuples(observer) == [
        ([""], ["namespaces"], ["list", "watch"]),
        CRD_OBSERVATION,
    ]
    assert one(docs, "ClusterRoleBinding")["roleRef"]["name"] == observer["metadata"]["name"]
    args = container_args(docs)
    assert args[args.index("--namespace") :] == ["--namespace", "team-a", "--namespace", "team-b"]


def granted(rules: list[dict], verb: str) -> set[tuple[str, str]]:
    """(API group, resource) pairs the rules grant ``verb`` on."""
    return {
        (group, resource)
        for rule in rules
        if verb in rule["verbs"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }


def prunable_resources() -> set[tuple[str, str]]:
    """(API group, resource) of every child the operator deletes when the spec stops asking
    for it, read from the operator's own table."""
    from llmroute.render.children import prunable_children

    return {(child.group, child.plural) for child in prunable_children()}


@pytest.mark.parametrize("mode", ["cluster-wide", "namespaced"])
def test_rbac_deletes_exactly_what_pruning_deletes(render, mode: str) -> None:
    # Without delete a prune gets 403 and the route is retried forever; with more, the
    # operator could delete what it never needs to (children otherwise go with their route,
    # through the garbage collector).
    if mode == "cluster-wide":
        roles = [one(render(), "ClusterRole")]
    else:
        roles = by_kind(render("--set", "watchNamespaces={team-a,team-b}"), "Role")
    assert roles
    assert {("apps", "statefulsets"), ("", "services")} <= prunable_resources()
    for role in roles:
        assert granted(role["rules"], "delete") == prunable_resources()
        assert granted(role["rules"], "deletecollection") == set()


def test_rbac_never_writes_secrets(render) -> None:
    # The operator creates the generated master-key Secret once and never overwrites it
    # (kube.create); referenced Secrets are only read.
    for name, docs in all_renderings(render):
        for role in by_kind(docs, "ClusterRole") + by_kind(docs, "Role"):
            for verb in ("patch", "update", "delete", "deletecollection"):
                assert ("", "secrets") not in granted(role["rules"], verb), (name, verb)


def test_namespaced_rbac_without_cluster_observation(render) -> None:
    docs = render("--set", "watchNamespaces={team-a}", "--set", "rbac.clusterObservation=false")
    assert not by_kind(docs, "ClusterRole") and not by_kind(docs, "ClusterRoleBinding")
    assert len(by_kind(docs, "Role")) == 1


def test_rbac_off(render) -> None:
    docs = render("--set", "rbac.create=false")
    for kind in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"):
        assert not by_kind(docs, kind)


# -- operator Deployment -------------------------------------------------------------------


def test_default_deployment_runs_standalone(render) -> None:
    docs = render()
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"ghcr.io/llmroute/llmroute:{llmroute.__version__}"
    assert container["command"] == ["llmroute"]
    assert container["args"] == [
        "run",
        "--liveness",
        "http://0.0.0.0:8080/healthz",
        "--metrics",
        "0.0.0.0:8081",
    ]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["ports"] == [
        {"name": "health", "containerPort": 8080, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 8081, "protocol": "TCP"},
    ]
    assert container["resources"]["limits"]["memory"]
    # kopf names a peer after POD_ID; without it, after the user name, which UID 10001 lacks.
    assert container["env"][0] == {
        "name": "POD_ID",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
    }
    assert not by_kind(docs, "ClusterKopfPeering") and not by_kind(docs, "KopfPeering")


def test_operator_knows_its_namespace(render, monkeypatch: pytest.MonkeyPatch) -> None:
    # The NetworkPolicies the operator renders admit its own namespace's pods (to scrape
    # /metrics, to ask Ollama for its models); it learns that namespace from the downward API.
    from llmroute.state import operator_namespace

    for name, docs in all_renderings(render):
        container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
        from_namespace = [
            env["name"]
            for env in container["env"]
            if env.get("valueFrom") == {"fieldRef": {"fieldPath": "metadata.namespace"}}
        ]
        assert from_namespace == ["POD_NAMESPACE"], name
        monkeypatch.setenv(from_namespace[0], "ops")
        assert operator_namespace() == "ops"


def test_api_base_allow_list_reaches_the_operator(render, monkeypatch: pytest.MonkeyPatch) -> None:
    # Default: no allow-list, so no variable, and the operator allows any host.
    from llmroute.api.api_base_policy import API_BASE_POLICY_ENV, ApiBasePolicy

    def policy_env(docs: list[dict]) -> list[dict]:
        container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
        return [e for e in container["env"] if e["name"] == API_BASE_POLICY_ENV]

    assert policy_env(render()) == []
    docs = render(
        "--set",
        "apiBase.allowedHosts={*.openai.azure.com,llm.internal}",
        "--set-json",
        'apiBase.allowedHostsByNamespace={"team-a":["gpu.team-a.internal"]}',
    )
    (env,) = policy_env(docs)
    policy = ApiBasePolicy.from_env(env["value"])
    assert policy.allowed_hosts == ("*.openai.azure.com", "llm.internal")
    assert policy.hosts_for("team-a") == ("gpu.team-a.internal",)
    assert policy.hosts_for("team-b") == ("*.openai.azure.com", "llm.internal")


def test_api_base_allow_list_is_schema_checked(helm) -> None:
    result = helm("template", "rel", str(CHART), "--set", "apiBase.allowedHosts=oops", check=False)
    assert result.returncode != 0 and "allowedHosts" in result.stderr


def test_replicas_use_kopf_peering(render) -> None:
    docs = render("-f", str(CHART / "ci" / "ha-peering-values.yaml"))
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert "strategy" not in deployment["spec"]
    args = container_args(docs)
    assert args[args.index("--peering") :][:2] == ["--peering", "llmroute-ha"]
    peering = one(docs, "ClusterKopfPeering")
    assert peering["apiVersion"] == "kopf.dev/v1"
    assert peering["metadata"]["name"] == "llmroute-ha"
    assert (["kopf.dev"], ["clusterkopfpeerings"], PEERING_VERBS) in rule_tuples(
        one(docs, "ClusterRole")
    )


def test_namespaced_replicas_use_a_peering_per_namespace(render) -> None:
    docs = render("--set", "watchNamespaces={team-a,team-b}", "--set", "replicaCount=2")
    peerings = by_kind(docs, "KopfPeering")
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["team-a", "team-b"]
    assert {p["metadata"]["name"] for p in peerings} == {"rel-llmroute"}
    assert not by_kind(docs, "ClusterKopfPeering")
    for role in by_kind(docs, "Role"):
        assert rule_tuples(role)[-1] == (["kopf.dev"], ["kopfpeerings"], PEERING_VERBS)
    assert "--peering" in container_args(docs)


def test_operator_pod_is_restricted(render) -> None:
    pod = one(render(), "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = pod["containers"][0]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"][0]["name"] == "tmp" and "emptyDir" in pod["volumes"][0]
    assert pod["serviceAccountName"] == "rel-llmroute"


def test_operator_pods_may_scrape_the_proxies(render) -> None:
    # The NetworkPolicy the operator renders for each proxy admits pods by this name.
    labels = one(render(), "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == OPERATOR_APP_NAME


def test_other_pods_never_match_the_operator_selector(render) -> None:
    docs = render("-f", str(CHART / "ci" / "extras-on-values.yaml"))
    selector = one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert one(docs, "Service")["spec"]["selector"] == selector
    test_pod = one(docs, "Pod")
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    labels = test_pod["metadata"]["labels"]
    assert not all(labels.get(k) == v for k, v in selector.items())


def test_image_digest_and_tag(render) -> None:
    digest = "sha256:" + "a" * 64
    docs = render("--set", "image.tag=v9", "--set", f"image.digest={digest}")
    image = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"ghcr.io/llmroute/llmroute:v9@{digest}"


def test_long_release_names_stay_valid(helm) -> None:
    name = "a-release-name-that-is-long-enough-to-need-cutting"
    out = helm("template", name, str(CHART)).stdout
    for doc in (d for d in yaml.safe_load_all(out) if d):
        assert len(doc["metadata"]["name"]) <= 63, doc["metadata"]["name"]


# -- extras ---------------------------------------------------------------------------------


def test_extras_are_off_by_default(render) -> None:
    kinds = {d["kind"] for d in render()}
    assert not kinds & {
        "LLMRoute",
        "ServiceMonitor",
        "NetworkPolicy",
        "ConfigMap",
        "PrometheusRule",
    }


def test_example_route_is_a_valid_llmroute(render) -> None:
    route = one(render("-f", str(CHART / "ci" / "extras-on-values.yaml")), "LLMRoute")
    assert validate(route) == []
    assert route["spec"]["ollama"]["models"] == ["llama3.2"]
    assert route["spec"]["models"][0]["targets"] == [{"provider": "ollama", "model": "llama3.2"}]


def proxies_monitor(docs: list[dict]) -> dict:
    (monitor,) = [
        d for d in by_kind(docs, "ServiceMonitor") if d["metadata"]["name"].endswith("-proxies")
    ]
    return monitor


def test_service_monitor_selects_the_proxies(render) -> None:
    monitor = proxies_monitor(render("-f", str(CHART / "ci" / "extras-on-values.yaml")))
    assert monitor["spec"]["selector"] == {
        "matchLabels": {
            "app.kubernetes.io/component": "proxy",
            "app.kubernetes.io/managed-by": "llmroute",
        }
    }
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    assert [(e["port"], e["path"]) for e in monitor["spec"]["endpoints"]] == [("http", "/metrics")]
    scoped = proxies_monitor(
        render("--set", "serviceMonitor.enabled=true", "--set", "watchNamespaces={a,b}")
    )
    assert scoped["spec"]["namespaceSelector"] == {"matchNames": ["a", "b"]}


def test_operator_metrics_are_exposed_and_scraped(render) -> None:
    docs = render("-f", str(CHART / "ci" / "extras-on-values.yaml"))
    deployment = one(docs, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert {"name": "metrics", "containerPort": 8081, "protocol": "TCP"} in container["ports"]
    service = one(docs, "Service")
    assert {"name": "metrics", "port": 8081, "targetPort": "metrics", "protocol": "TCP"} in (
        service["spec"]["ports"]
    )
    monitors = {m["metadata"]["name"]: m for m in docs if m["kind"] == "ServiceMonitor"}
    operator = monitors["rel-llmroute-operator"]
    assert (
        operator["spec"]["selector"]["matchLabels"].items()
        >= {
            "app.kubernetes.io/component": "operator",
            **service["spec"]["selector"],
        }.items()
    )
    jobs = {m["spec"]["endpoints"][0]["relabelings"][0]["replacement"] for m in monitors.values()}
    assert jobs == {"llmroute-proxy", "llmroute-operator"}
    policy = one(docs, "NetworkPolicy")
    assert {"ports": [{"protocol": "TCP", "port": "metrics"}]} in policy["spec"]["ingress"]
    off = render("--set", "metrics.enabled=false", "--set", "serviceMonitor.enabled=true")
    assert (
        "--metrics"
        not in one(off, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    assert [m["metadata"]["name"] for m in off if m["kind"] == "ServiceMonitor"] == [
        "rel-llmroute-proxies"
    ]


def test_prometheus_rule_wraps_the_rule_file(render) -> None:
    rule = one(render("--set", "prometheusRule.enabled=true"), "PrometheusRule")
    rules = yaml.safe_load((CHART / "rules" / "llmroute.rules.yaml").read_text())
    assert rule["spec"] == {"groups": rules["groups"]}


def litellm_metric_names() -> set[str]:
    """Series names the pinned litellm exports: counters get _total, histograms _bucket."""
    # Located, not imported: importing litellm takes seconds and may reach for the network.
    spec = importlib.util.find_spec("litellm")
    assert spec is not None and spec.origin is not None
    source = (Path(spec.origin).parent / "integrations" / "prometheus.py").read_text()
    names = set(re.findall(r'"(litellm_[a-z_]+)"', source))
    return {f"{n}{suffix}" for n in names for suffix in ("", "_total", "_bucket")}


def test_dashboard_queries_litellm_metrics(render) -> None:
    docs = render("-f", str(CHART / "ci" / "extras-on-values.yaml"))
    config_map = one(docs, "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = yaml.safe_load(config_map["data"]["llmroute.json"])
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\b(litellm_[a-z_]+)\{", e)}
    assert used == {
        "litellm_proxy_total_requests_metric_total",
        "litellm_request_total_latency_metric_bucket",
        "litellm_proxy_failed_requests_metric_total",
        "litellm_spend_metric_total",
        "litellm_deployment_failure_responses_total",
        "litellm_deployment_successful_fallbacks_total",
    }
    assert used <= litellm_metric_names()
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for word in ("requests", "latency", "failed", "spend", "provider", "model", "fallbacks"):
        assert word in titles


def test_operator_network_policy(render) -> None:
    policy = one(render("-f", str(CHART / "ci" / "extras-on-values.yaml")), "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == (
        OPERATOR_APP_NAME
    )
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    egress = policy["spec"]["egress"]
    egress_ports = {(p["protocol"], p["port"]) for rule in egress for p in rule["ports"]}
    assert egress_ports == {
        ("UDP", 53),
        ("TCP", 53),
        ("TCP", 443),
        ("TCP", 6443),
        ("TCP", 4000),
        ("TCP", 11434),
    }
    components = {
        rule["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for rule in egress
        if "to" in rule
    }
    assert components == {"proxy", "ollama"}


# -- values documentation ------------------------------------------------------------------


def documented_paths() -> set[str]:
    """Dotted paths of the keys in values.yaml that carry a `# --` comment."""
    documented, stack, pending = set(), [], False
    for line in (CHART / "values.yaml").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending = True
            continue
        if not stripped or stripped.startswith("#"):
            continue
        match = re.match(r"^( *)([A-Za-z][\w-]*):", line)
        if not match:
            pending = False
            continue
        depth = len(match.group(1)) // 2
        stack = [*stack[:depth], match.group(2)]
        if pending:
            documented.add(".".join(stack))
        pending = False
    return documented


def test_every_value_is_documented() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    documented = documented_paths()
    undocumented = []

    def walk(node: object, path: list[str]) -> None:
        dotted = ".".join(path)
        if dotted in documented:
            return
        if isinstance(node, dict) and node:
            for key, child in node.items():
                walk(child, [*path, key])
        else:
            undocumented.append(dotted)

    for key, node in values.items():
        walk(node, [key])
    assert undocumented == []


def test_docs_list_every_value() -> None:
    install = (REPO / "docs" / "install.md").read_text()
    missing = sorted(p for p in documented_paths() if f"`{p}`" not in install)
    assert missing == [], "add these values to the table in docs/install.md"
