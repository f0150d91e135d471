"""The cluster path of the README ("Quick start") and of docs/install.md (its blocks up to
the wait for Ready), run verbatim against the local cluster until the route is Ready.

Each document's commands run as written in one `bash -e -o pipefail`, from the repository's
root, with the pinned kubectl and helm first on PATH, a kubeconfig whose current namespace is
the test's, and dummy provider keys in ANTHROPIC_API_KEY and OPENAI_API_KEY. The test passes
when the route the commands apply is Ready=True, read from the API server.

What this machine lacks is provided around the commands, never by changing them:
- No container runtime and no registry: the chart's operator Deployment is scheduled and kwok
  reports its pod Running and Ready, but no container runs. The operator runs instead as a
  local process (`llmroute run`) with the token of the chart's ServiceAccount, so it has the
  permissions the chart grants and no more. It starts once the commands' `helm install` has
  created that account.
- The process runner plays the node's kubelet: the real litellm proxy for each proxy pod,
  the real Ollama server for the Ollama pod.
- No storage provisioner: the PersistentVolume a default StorageClass would provision for the
  Ollama's claim is made beforehand, bound to that claim.
- No model registry: the Ollama volume already holds the tiny local model under the name the
  example declares (llama3.2), so the pull script finds it as after an earlier pull.
- The provider keys are dummies: a route gets Ready without calling its providers, and
  nothing here calls the gateway.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from built_tools import require_tools
from docs_blocks import REPO, SCRIPTS, applied_files, helm_installs, routes
from llmroute.api import GROUP, ROUTE_PLURAL, VERSION
from localcluster import LocalCluster, prebound_volume, tools, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]

# The commands' own `kubectl wait` allows 15 minutes; the test gives up a little earlier.
COMMANDS_TIMEOUT = 1200
DUMMY_KEYS = {"ANTHROPIC_API_KEY": "sk-ant-dummy", "OPENAI_API_KEY": "sk-dummy"}


@pytest.fixture
def admin_operator_stopped(operator) -> Iterator[type]:
    """The session's operator stopped meanwhile (one operator reconciles: the chart's); its
    class, to start the chart's."""
    operator.stop()
    try:
        yield type(operator)
    finally:
        operator.start()


def user_kubeconfig(cluster: LocalCluster, namespace: str, path: Path) -> Path:
    """The cluster's kubeconfig with the test's namespace as the current one, as a user's
    `kubectl config set-context --current --namespace` leaves it."""
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    current = config["current-context"]
    for context in config["contexts"]:
        if context["name"] == current:
            context["context"]["namespace"] = namespace
    path.write_text(yaml.safe_dump(config))
    return path


def ready(custom: client.CustomObjectsApi, namespace: str, name: str) -> bool:
    obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, ROUTE_PLURAL, name)
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


@pytest.mark.parametrize("document", sorted(SCRIPTS))
def test_cluster_path_runs_as_written(
    document: str,
    cluster: LocalCluster,
    api: client.ApiClient,
    namespace: str,
    tmp_path: Path,
    process_runner,  # the node's kubelet for the route's pods
    admin_operator_stopped: type,
) -> None:
    require_tools("helm", "kubectl")
    script = SCRIPTS[document]()
    (release,) = helm_installs(script)
    examples = applied_files(script)
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    volumes = []
    for route in routes(examples):
        if "ollama" in route["spec"] and "external" not in route["spec"]["ollama"]:
            name = route["metadata"]["name"]
            size = route["spec"]["ollama"].get("storage", {}).get("size", "20Gi")
            volume = prebound_volume(
                f"{namespace}-{name}-ollama", namespace, f"models-{name}-ollama-0", size=size
            )
            core.create_persistent_volume(volume)
            volumes.append(volume["metadata"]["name"])

    bin_dirs = dict.fromkeys(str(tools.binary(tool).parent) for tool in ("kubectl", "helm"))
    env = {
        **os.environ,
        **DUMMY_KEYS,
        "PATH": os.pathsep.join([*bin_dirs, os.environ.get("PATH", "")]),
        "KUBECONFIG": str(user_kubeconfig(cluster, namespace, tmp_path / "kubeconfig")),
        "HELM_CACHE_HOME": str(tmp_path / "helm" / "cache"),
        "HELM_CONFIG_HOME": str(tmp_path / "helm" / "config"),
        "HELM_DATA_HOME": str(tmp_path / "helm" / "data"),
    }
    output = tmp_path / "commands.log"
    operator = None
    with output.open("wb") as log:
        commands = subprocess.Popen(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def shown() -> str:
        return f"the commands printed:\n{output.read_text(errors='replace')[-6000:]}"

    try:
        # The chart's ServiceAccount is named after its fullname (docs/install.md).
        account = release.name if "llmroute" in release.name else f"{release.name}-llmroute"

        def account_created() -> bool:
            if commands.poll() is not None and commands.returncode != 0:
                raise AssertionError(f"{document}: the commands failed; {shown()}")
            try:
                core.read_namespaced_service_account(account, release.namespace)
            except ApiException as error:
                if error.status == 404:
                    return False
                raise
            return True

        try:
            wait_for(account_created, timeout=300, what="the chart's ServiceAccount")
        except TimeoutError as error:
            pytest.fail(f"{error}; {shown()}")
        token = core.create_namespaced_service_account_token(
            account, release.namespace, {"spec": {"expirationSeconds": 3600}}
        ).status.token
        operator_kubeconfig = tmp_path / "operator-kubeconfig"
        operator_kubeconfig.write_text(
            yaml.safe_dump(
                cluster.kubeconfig_for(
                    f"system:serviceaccount:{release.namespace}:{account}", token
                )
            )
        )
        operator = admin_operator_stopped(operator_kubeconfig, tmp_path / "operator.log")
        operator.start()

        try:
            returncode = commands.wait(COMMANDS_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"{document}: the commands did not finish in {COMMANDS_TIMEOUT}s; {shown()}\n"
                f"the operator's log:\n{operator.log()}"
            )
        assert returncode == 0, (
            f"{document}: the commands failed; {shown()}\nthe operator's log:\n{operator.log()}"
        )
        for route in routes(examples):
            assert ready(custom, namespace, route["metadata"]["name"])
    finally:
        if commands.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(commands.pid, signal.SIGKILL)
            commands.wait()
        cleanup(document, env, examples, namespace, custom, release, operator)
        for name in volumes:
            core.delete_persistent_volume(name)


def cleanup(document, env, examples, namespace, custom, release, operator) -> None:
    """Delete the routes while the operator runs (it removes its finalizer), then stop it and
    uninstall the chart, so the next document starts from the same cluster."""

    def run(*argv: str) -> None:
        subprocess.run(argv, cwd=REPO, env=env, capture_output=True, timeout=300, check=False)

    for path in examples:
        run("kubectl", "delete", "--ignore-not-found", "--wait=false", "-f", str(path))
    if operator is not None and operator.popen is not None:
        for route in routes(examples):
            name = route["metadata"]["name"]

            def gone(name: str = name) -> bool:
                try:
                    custom.get_namespaced_custom_object(
                        GROUP, VERSION, namespace, ROUTE_PLURAL, name
                    )
                except ApiException as error:
                    return error.status == 404
                return False

            wait_for(gone, timeout=120, what=f"{document}: route {name} deleted")
        if operator.popen.poll() is None:
            operator.stop()
    run("helm", "uninstall", release.name, "--namespace", release.namespace, "--wait")
