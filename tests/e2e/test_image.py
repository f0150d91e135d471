"""The operator image: built from the Dockerfile by hack/build-image.sh, checked, then run
against the local control plane in place of the operator process.

When this module skips: only when no Docker engine can run on the machine. If no engine
answers, the tests start a dockerd of their own for the module (and stop it afterwards); they
skip, with the reason, when that is impossible: not root, dockerd exiting at start (a sandbox
that forbids what it needs), or dockerd not installed. Under CI (the environment variable CI
set) a missing dockerd is installed with apt-get first, as hack/build-image.sh does, so CI
skips only where the platform itself cannot run Docker (not root, no apt-get, or dockerd
exiting at start). Everything after that fails rather than skips: the build, the image's
contents, the operator in the container.

The build is the script's: with no registry it imports a stand-in base image made with
debootstrap and builds with `--network none` from wheels downloaded on this machine. Its
downloads are cached under ~/.cache/llmroute, and Docker keeps the build cache, so only the
first run on a machine is slow (about 7 minutes on 2 cores; a cached one takes seconds).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

import llmroute
from llmroute.api import GROUP, ROUTE_PLURAL, VERSION
from localcluster import DockerEngine, LocalCluster, free_port, tools, wait_for
from manifests import OPENAI_ROUTE, changed

# A cold build (base image, wheels, every layer) takes most of this.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

IMAGE = "llmroute:e2e"
BUILD_SCRIPT = tools.REPO_ROOT / "hack" / "build-image.sh"
STOP_GRACE = 30  # docker stop --time: SIGTERM, then SIGKILL after this many seconds


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result


@pytest.fixture(scope="module")
def image(docker_engine: DockerEngine) -> str:
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT), IMAGE],
        capture_output=True,
        text=True,
        # The wheels are downloaded by the pip of the Python running the tests.
        env={**os.environ, "PYTHON": sys.executable},
        timeout=1500,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"hack/build-image.sh failed:\n{output[-6000:]}"
    summary = [line for line in output.splitlines() if line.startswith("[build-image]")]
    print("\n".join(summary))
    return IMAGE


# -- the image -----------------------------------------------------------------------------


def test_runs_as_a_numeric_non_root_user(image: str) -> None:
    user = docker("image", "inspect", "--format", "{{.Config.User}}", image).stdout.strip()
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, user
    assert not gid or gid.isdigit(), user
    # What a container of the image really runs as.
    ran = docker("run", "--rm", "--network", "none", "--entrypoint", "id", image, "-u")
    assert ran.stdout.strip() == uid


def test_final_stage_has_no_compiler(image: str) -> None:
    found = docker(
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "sh",
        image,
        "-c",
        "command -v gcc cc g++ c++ || true",
    )
    assert found.stdout.strip() == ""


def test_cli_runs_in_the_image(image: str) -> None:
    helped = docker("run", "--rm", "--network", "none", image, "--help")
    assert "run" in helped.stdout
    versioned = docker("run", "--rm", "--network", "none", image, "--version")
    assert llmroute.__version__ in versioned.stdout
    labels = docker("image", "inspect", "--format", "{{json .Config.Labels}}", image).stdout
    assert f'"org.opencontainers.image.version":"{llmroute.__version__}"' in labels


# -- the operator from the image against the cluster ----------------------------------------


@pytest.fixture
def admin_operator_stopped(operator) -> Iterator[None]:
    """The session's operator process stopped meanwhile: one operator reconciles, the image's."""
    operator.stop()
    try:
        yield
    finally:
        operator.start()


@pytest.fixture
def container(
    image: str, cluster: LocalCluster, admin_operator_stopped: None, tmp_path: Path
) -> Iterator[dict]:
    """`llmroute run` from the image on the host network, as the chart runs it: read-only root
    file system with a /tmp of its own, no capabilities, no privilege escalation."""
    # The image's user (UID 10001) reads the mounted file; the server is on loopback.
    kubeconfig = tmp_path / "kubeconfig"
    shutil.copyfile(cluster.kubeconfig, kubeconfig)
    kubeconfig.chmod(0o644)
    name = f"llmroute-e2e-{uuid.uuid4().hex[:8]}"
    port = free_port()
    try:
        docker(
            "run",
            "--detach",
            "--name",
            name,
            "--network",
            "host",
            "--read-only",
            "--tmpfs",
            "/tmp",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--volume",
            f"{kubeconfig}:/kube/config:ro",
            "--env",
            "KUBECONFIG=/kube/config",
            image,
            "run",
            "--kubeconfig",
            "/kube/config",
            "--liveness",
            f"http://127.0.0.1:{port}/healthz",
        )
        yield {"name": name, "liveness": f"http://127.0.0.1:{port}/healthz"}
    finally:
        docker("rm", "--force", name, check=False)


def logs(name: str) -> str:
    result = docker("logs", name, check=False)
    return result.stdout + result.stderr


def test_operator_from_the_image_reconciles_and_stops_gracefully(
    container: dict,
    api: client.ApiClient,
    namespace: str,
    process_runner,  # the node's kubelet: the route is Ready once its proxy serves
) -> None:
    name = container["name"]

    def live() -> str | None:
        state = docker("inspect", "--format", "{{.State.Running}}", name).stdout.strip()
        if state != "true":
            return "exited"
        with urllib.request.urlopen(container["liveness"], timeout=2) as response:
            return "live" if response.status == 200 else None

    try:
        result = wait_for(live, timeout=90, what="liveness of the operator in the container")
    except TimeoutError as error:
        raise AssertionError(f"{error}\n{logs(name)[-5000:]}") from None
    assert result == "live", f"the operator container exited:\n{logs(name)[-5000:]}"

    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    core.create_namespaced_secret(
        namespace,
        {"metadata": {"name": "provider-keys"}, "stringData": {"openai": "sk-test-openai"}},
    )
    route = changed(OPENAI_ROUTE, {"metadata.name": "gw"})
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, ROUTE_PLURAL, route)

    def ready() -> dict | None:
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, ROUTE_PLURAL, "gw")
        conditions = (obj.get("status") or {}).get("conditions") or []
        is_ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
        return obj if is_ready else None

    try:
        obj = wait_for(ready, timeout=180, what="LLMRoute gw Ready=True")
    except TimeoutError as error:
        raise AssertionError(f"{error}\n{logs(name)[-5000:]}") from None
    assert obj["status"]["endpoint"] == f"http://gw.{namespace}.svc:4000"
    apps = client.AppsV1Api(api)
    assert apps.read_namespaced_deployment("gw-litellm", namespace).status.available_replicas == 1
    # No other operator runs meanwhile; the container's log shows its kopf handling the route.
    assert "Creation is processed: 1 succeeded; 0 failed." in logs(name)

    # docker stop sends SIGTERM (the image's entrypoint is PID 1, which has no default
    # handler for it) and SIGKILL after the grace period; a clean exit comes before that.
    started = time.monotonic()
    docker("stop", "--time", str(STOP_GRACE), name, timeout=STOP_GRACE + 30)
    took = time.monotonic() - started
    state = docker(
        "inspect", "--format", "{{.State.ExitCode}} {{.State.OOMKilled}}", name
    ).stdout.split()
    output = logs(name)
    assert state == ["0", "false"], f"exit code, OOM-killed: {state}\n{output[-5000:]}"
    assert took < STOP_GRACE, f"stopped after {took:.1f}s, by SIGKILL:\n{output[-5000:]}"
    assert "Signal SIGTERM is received. Operator is stopping." in output, output[-5000:]
