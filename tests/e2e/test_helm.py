"""The Helm chart against a real API server: server-side validation, install, upgrade,
uninstall, Pod Security admission, and an operator that runs on nothing but the chart's RBAC.
"""

from __future__ import annotations

import os
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from built_tools import require_tools
from llmroute import kube
from llmroute.api import GROUP, ROUTE_PLURAL, VERSION
from llmroute.render.children import prunable_children
from localcluster import LocalCluster, tools, wait_for
from manifests import OPENAI_ROUTE, changed, render_manifest

pytestmark = pytest.mark.e2e

CHART = tools.REPO_ROOT / "charts" / "llmroute"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
LLMROUTE_CRDS = {"llmroutes.llmroute.dev", "modelquotas.llmroute.dev"}
PEERING_CRDS = {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}
SERVICE_MONITOR_CRD = "monitoring.coreos.com_servicemonitors.yaml"


# -- helpers -------------------------------------------------------------------------------


class Tools:
    """helm and kubectl against the test cluster, with a private helm home."""

    def __init__(self, kubeconfig: Path, home: Path) -> None:
        self.kubeconfig = kubeconfig
        self.env = {
            **os.environ,
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }

    def run(
        self, tool: str, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(tools.binary(tool)), "--kubeconfig", str(self.kubeconfig), *args]
        result = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, env=self.env, timeout=180
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{tool} {' '.join(args)} failed:\n{result.stderr}")
        return result

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("helm", *args, check=check)

    def kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.run("kubectl", *args, stdin=stdin)

    def template(self, namespace: str, *args: str) -> list[dict]:
        out = self.helm("template", "rel", str(CHART), "--namespace", namespace, *args).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]

    def server_dry_run(self, docs: list[dict]) -> None:
        # Every namespaced object of the chart names its namespace.
        out = self.kubectl(
            "apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(docs)
        ).stdout
        lines = out.strip().splitlines()
        assert len(lines) == len(docs), out
        assert all(line.endswith("(server dry run)") for line in lines), out


@pytest.fixture(scope="module")
def cli(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Tools:
    require_tools("helm", "kubectl")
    return Tools(cluster.kubeconfig, tmp_path_factory.mktemp("helm-home"))


def crd_established(api: client.ApiClient, name: str) -> bool:
    crd = client.ApiextensionsV1Api(api).read_custom_resource_definition(name)
    return any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])


@pytest.fixture(scope="module")
def peering_crds(cli: Tools, api: client.ApiClient) -> None:
    """kopf's peering CRDs, as the chart installs them; other tests are indifferent to them."""
    cli.kubectl("apply", "--server-side", "-f", str(CHART / "crds" / "kopf.dev_peerings.yaml"))
    for name in PEERING_CRDS:
        wait_for(lambda name=name: crd_established(api, name), timeout=30, what=f"{name}")


def find_service_monitor_crd() -> Path | None:
    """The Prometheus Operator's ServiceMonitor CRD, if its Go module is on this machine."""
    pinned = tools.versions().get("PROMETHEUS_OPERATOR_VERSION")
    if pinned:
        path = tools.tools_dir() / f"prometheus-operator-{pinned}" / SERVICE_MONITOR_CRD
        if path.exists():
            return path
    gomodcache = os.environ.get("GOMODCACHE") or str(Path.home() / "go" / "pkg" / "mod")
    found = sorted(
        Path(gomodcache).glob(
            "github.com/prometheus-operator/prometheus-operator@v*/example/"
            f"prometheus-operator-crd/{SERVICE_MONITOR_CRD}"
        )
    )
    return found[-1] if found else None


@pytest.fixture(scope="module")
def service_monitor_crd(cli: Tools, api: client.ApiClient) -> bool:
    path = find_service_monitor_crd()
    if path is None:
        return False
    cli.kubectl("apply", "--server-side", "-f", str(path))
    wait_for(
        lambda: crd_established(api, "servicemonitors.monitoring.coreos.com"),
        timeout=30,
        what="ServiceMonitor CRD",
    )
    return True


@pytest.fixture
def extra_namespaces(api: client.ApiClient) -> Iterator[list[str]]:
    """Namespaces a test creates besides its own; deleted afterwards."""
    created: list[str] = []
    yield created
    core = client.CoreV1Api(api)
    for name in created:
        core.delete_namespace(name, propagation_policy="Background")


def ensure_namespace(api: client.ApiClient, name: str, created: list[str]) -> None:
    try:
        client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
        created.append(name)
    except ApiException as error:
        if error.status != 409:
            raise


def pod_from_template(template: dict, name: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": template["metadata"].get("labels", {})},
        "spec": template["spec"],
    }


def release_objects(api: client.ApiClient, namespace: str, release: str) -> dict[str, object]:
    """The chart's objects of a release that exist now, by kind."""
    selector = f"app.kubernetes.io/instance={release}"
    rbac = client.RbacAuthorizationV1Api(api)
    return {
        "Deployment": client.AppsV1Api(api)
        .list_namespaced_deployment(namespace, label_selector=selector)
        .items,
        "ServiceAccount": client.CoreV1Api(api)
        .list_namespaced_service_account(namespace, label_selector=selector)
        .items,
        "ClusterRole": rbac.list_cluster_role(label_selector=selector).items,
        "ClusterRoleBinding": rbac.list_cluster_role_binding(label_selector=selector).items,
        "Role": rbac.list_role_for_all_namespaces(label_selector=selector).items,
    }


# -- server-side validation ------------------------------------------------------------------


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda v: v.name)
def test_ci_values_pass_server_side_dry_run(
    cli: Tools,
    api: client.ApiClient,
    namespace: str,
    values: Path,
    peering_crds: None,
    service_monitor_crd: bool,
    extra_namespaces: list[str],
) -> None:
    for name in yaml.safe_load(values.read_text()).get("watchNamespaces") or []:
        ensure_namespace(api, name, extra_namespaces)
    docs = cli.template(namespace, "-f", str(values))
    if not service_monitor_crd:
        skipped = [d for d in docs if d["kind"] == "ServiceMonitor"]
        if skipped:
            warnings.warn(
                "the ServiceMonitor CRD is not available here: its object was not validated",
                stacklevel=1,
            )
        docs = [d for d in docs if d["kind"] != "ServiceMonitor"]
    cli.server_dry_run(docs)


def test_chart_crds_pass_server_side_dry_run(cli: Tools, namespace: str) -> None:
    docs = cli.template(namespace, "--include-crds")
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    assert {c["metadata"]["name"] for c in crds} == LLMROUTE_CRDS | PEERING_CRDS
    cli.server_dry_run(crds)


# -- install, upgrade, uninstall -------------------------------------------------------------


def test_install_upgrade_uninstall(
    cli: Tools, api: client.ApiClient, namespace: str, peering_crds: None
) -> None:
    release = namespace  # unique: the chart's cluster-scoped objects are named after it
    fullname = f"{release}-llmroute"
    apps = client.AppsV1Api(api)
    custom = client.CustomObjectsApi(api)

    wait = ["--wait", "--timeout", "2m"]
    cli.helm("install", release, str(CHART), "--namespace", namespace, "--skip-crds", *wait)
    deployment = apps.read_namespaced_deployment(fullname, namespace)
    assert deployment.status.available_replicas == 1
    args = deployment.spec.template.spec.containers[0].args
    assert "--peering" not in args and "--namespace" not in args
    objects = release_objects(api, namespace, release)
    assert all(objects[kind] for kind in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding"))

    changes = ["--set", "replicaCount=2", "--set", "resources.limits.memory=768Mi"]
    cli.helm(
        "upgrade", release, str(CHART), "--namespace", namespace, "--skip-crds", *changes, *wait
    )
    deployment = apps.read_namespaced_deployment(fullname, namespace)
    assert deployment.spec.replicas == 2
    container = deployment.spec.template.spec.containers[0]
    assert container.args[container.args.index("--peering") + 1] == fullname
    assert container.resources.limits["memory"] == "768Mi"
    assert custom.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", fullname)

    def two_available() -> bool:
        return apps.read_namespaced_deployment(fullname, namespace).status.available_replicas == 2

    wait_for(two_available, timeout=60, what="2 operator replicas available")

    cli.helm("uninstall", release, "--namespace", namespace, *wait)
    assert not any(release_objects(api, namespace, release).values())
    with pytest.raises(ApiException) as missing:
        custom.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", fullname)
    assert missing.value.status == 404
    # Helm never deletes what it installed from crds/: the routes of every team survive.
    for name in LLMROUTE_CRDS | PEERING_CRDS:
        assert crd_established(api, name)


def test_install_with_crds_in_namespaced_mode(cli: Tools, api: client.ApiClient, namespace: str):
    """Without --skip-crds: CRDs that exist are kept as they are, missing ones are created."""
    release = namespace
    values = ["--set", f"watchNamespaces={{{namespace}}}"]
    cli.helm("install", release, str(CHART), "--namespace", namespace, *values, "--wait")
    try:
        for name in LLMROUTE_CRDS | PEERING_CRDS:
            assert crd_established(api, name)
        objects = release_objects(api, namespace, release)
        assert [r.metadata.namespace for r in objects["Role"]] == [namespace]
        # Only kopf's read-only observer role is cluster-wide.
        observers = [r.metadata.name for r in objects["ClusterRole"]]
        assert observers == [f"{release}-llmroute-observer"]
    finally:
        cli.helm("uninstall", release, "--namespace", namespace, "--wait")


# -- Pod Security admission ------------------------------------------------------------------


def test_pods_pass_the_restricted_pod_security_standard(
    cli: Tools, api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api)
    core.patch_namespace(
        namespace,
        {
            "metadata": {
                "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                }
            }
        },
    )
    # Admission really enforces the standard here: a pod that may run as root is refused.
    careless = {
        "metadata": {"name": "careless"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(namespace, careless, dry_run="All")
    assert refused.value.status == 403 and "restricted" in refused.value.body

    docs = cli.template(namespace)
    operator = next(d for d in docs if d["kind"] == "Deployment")
    test_pod = next(d for d in docs if d["kind"] == "Pod")
    # Admission of a pod looks its ServiceAccount up.
    core.create_namespaced_service_account(
        namespace, next(d for d in docs if d["kind"] == "ServiceAccount")
    )

    route = yaml.safe_load((tools.REPO_ROOT / "examples" / "smart-chain.yaml").read_text())
    route["metadata"]["namespace"] = namespace
    proxy = next(o for o in render_manifest(route).objects if o["kind"] == "Deployment")

    pods = {
        "operator": pod_from_template(operator["spec"]["template"], "operator"),
        "helm-test": test_pod,
        "proxy": pod_from_template(proxy["spec"]["template"], "proxy"),
    }
    for what, pod in pods.items():
        try:
            core.create_namespaced_pod(namespace, pod, dry_run="All")
        except ApiException as error:
            pytest.fail(f"the {what} pod is refused: {error.body}")


# -- RBAC sufficiency ------------------------------------------------------------------------


# A spec (merged over OPENAI_ROUTE's) that asks for every child the operator prunes when the
# spec stops asking for it: a PodDisruptionBudget and an HPA (autoscaling from two replicas),
# the managed Ollama (StatefulSet, Service, NetworkPolicy) and an Ingress (spec.expose).
EVERY_OPTIONAL_CHILD = {
    "models": [
        *OPENAI_ROUTE["spec"]["models"],
        {"name": "local", "targets": [{"provider": "ollama", "model": "llama3.2"}]},
    ],
    "proxy": {"autoscaling": {"enabled": True, "minReplicas": 2}},
    "ollama": {"models": ["llama3.2"]},
    "redis": {"managed": {}},
    "expose": {"ingress": {"host": "llm.example.com"}, "fromNamespace": {}},
}
# spec.expose's other way, an HTTPRoute: a kind of the Gateway API, which this cluster may not
# serve (tests/e2e/test_expose_e2e.py covers it).
HTTP_ROUTE_EXPOSE = {"httpRoute": {"parentRefs": [{"name": "public"}]}}


def optional_children_of(spec: dict) -> set[tuple[str, str, str]]:
    """(apiVersion, kind, name) of the prunable children a route `gw` with `spec` renders."""
    route = changed(OPENAI_ROUTE, {"metadata.name": "gw", "metadata.namespace": "ns"})
    route["spec"].update(spec)
    prunable = {(c.api_version, c.kind, c.name("gw")) for c in prunable_children()}
    rendered = {
        (o["apiVersion"], o["kind"], o["metadata"]["name"]) for o in render_manifest(route).objects
    }
    return rendered & prunable


def test_the_spec_with_every_optional_child_renders_them_all() -> None:
    rendered = optional_children_of(EVERY_OPTIONAL_CHILD)
    rendered |= optional_children_of({**EVERY_OPTIONAL_CHILD, "expose": HTTP_ROUTE_EXPOSE})
    assert {(c.api_version, c.kind, c.name("gw")) for c in prunable_children()} == rendered


@pytest.fixture(params=["cluster-wide", "namespaced"])
def watch_args(request: pytest.FixtureRequest, namespace: str) -> list[str]:
    """`llmroute run` arguments of the mode under test (none: the whole cluster)."""
    return [] if request.param == "cluster-wide" else ["--namespace", namespace]


@pytest.fixture
def operator_process(operator) -> Iterator[type]:
    """The OperatorProcess class, with the session's admin operator stopped meanwhile.

    Two operators would reconcile the same routes; the admin one could even hide a permission
    the chart's ServiceAccount lacks.
    """
    operator.stop()
    yield type(operator)
    operator.start()


def start_operator(process_class: type, kubeconfig: Path, log: Path, args: list[str]):
    proc = process_class(kubeconfig, log, args=args)
    proc.start()
    return proc


def test_operator_runs_on_the_charts_rbac(
    cli: Tools,
    cluster: LocalCluster,
    api: client.ApiClient,
    namespace: str,
    tmp_path: Path,
    watch_args: list[str],
    operator_process: type,
    process_runner,  # the node's kubelet: the route is Ready once its proxy serves
) -> None:
    release = namespace
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    values = ["--set", "replicaCount=0"]  # the operator runs here as a process, not as a pod
    if watch_args:
        values += ["--set", f"watchNamespaces={{{namespace}}}"]
    cli.helm("install", release, str(CHART), "--namespace", namespace, "--skip-crds", *values)
    proc = None
    log = tmp_path / "operator.log"
    try:
        account = f"{release}-llmroute"
        token = core.create_namespaced_service_account_token(
            account, namespace, {"spec": {"expirationSeconds": 3600}}
        ).status.token
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                cluster.kubeconfig_for(f"system:serviceaccount:{namespace}:{account}", token)
            )
        )
        proc = start_operator(operator_process, kubeconfig, log, watch_args)

        core.create_namespaced_secret(
            namespace,
            {"metadata": {"name": "provider-keys"}, "stringData": {"openai": "sk-test-openai"}},
        )
        route = changed(OPENAI_ROUTE, {"metadata.name": "gw"})
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, ROUTE_PLURAL, route)

        def ready() -> bool:
            obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, ROUTE_PLURAL, "gw")
            conditions = (obj.get("status") or {}).get("conditions") or []
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        try:
            wait_for(ready, timeout=180, what="LLMRoute gw Ready=True")
        except TimeoutError as error:
            pytest.fail(f"{error}; the operator's log:\n{proc.log()}")
        core.read_namespaced_config_map("gw-litellm", namespace)
        core.read_namespaced_service("gw", namespace)
        core.read_namespaced_secret("gw-master-key", namespace)
        client.AppsV1Api(api).read_namespaced_deployment("gw-litellm", namespace)
        client.NetworkingV1Api(api).read_namespaced_network_policy("gw-litellm", namespace)

        # Pruning: a spec that asks for every optional child, then for none of them.
        optional = sorted(optional_children_of(EVERY_OPTIONAL_CHILD))
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, ROUTE_PLURAL, "gw", {"spec": EVERY_OPTIONAL_CHILD}
        )

        def existing() -> list[str]:
            return [kind for v, kind, name in optional if kube.get(api, v, kind, namespace, name)]

        wanted = sorted(kind for _, kind, _ in optional)
        try:
            wait_for(lambda: sorted(existing()) == wanted, timeout=90, what="every optional child")
            custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                ROUTE_PLURAL,
                "gw",
                # Merge patch: null removes a key, a list is replaced whole.
                {"spec": {key: route["spec"].get(key) for key in EVERY_OPTIONAL_CHILD}},
            )
            wait_for(lambda: existing() == [], timeout=90, what="the optional children pruned")
        except TimeoutError as error:
            pytest.fail(f"{error}; existing: {existing()}; the operator's log:\n{proc.log()}")
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, ROUTE_PLURAL, "gw")
    finally:
        if proc is not None and proc.popen is not None and proc.popen.poll() is None:
            proc.stop()
        cli.helm("uninstall", release, "--namespace", namespace, "--wait")
    # RBAC denials name the ServiceAccount ('User "system:serviceaccount:..." cannot patch ...');
    # kopf reports what it could not list or watch. Other 403s (a namespace of an earlier test
    # being deleted) are no concern here.
    denials = [
        line
        for line in log.read_text(errors="replace").splitlines()
        if ("system:serviceaccount:" in line and " cannot " in line)
        or "Not enough permissions" in line
    ]
    assert denials == [], "the chart's RBAC denied the operator something"
