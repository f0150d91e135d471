"""Fixtures for the e2e suite: one real local control plane per test session."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from kubernetes import client

from built_tools import require_tools
from llmroute.api.api_base_policy import API_BASE_POLICY_ENV
from localcluster import DockerEngine, DockerUnavailable, LocalCluster, ProcessRunner, free_port
from secrets_sweep import SecretsSweep

# Every operator log of the session (OperatorProcess adds its own), for the secrets sweep.
OPERATOR_LOGS: list[Path] = []


@pytest.fixture(scope="session")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch_session: pytest.MonkeyPatch
) -> Iterator[LocalCluster]:
    require_tools()
    # Every process runner of the session keeps its pods' logs here, for the sweep.
    runner_logs = tmp_path_factory.mktemp("runner-logs")
    monkeypatch_session.setenv(ProcessRunner.LOG_DIR_ENV, str(runner_logs))
    with (
        LocalCluster(workdir=tmp_path_factory.mktemp("cluster")) as local,
        local.api_client() as sweep_api,
    ):
        sweep = SecretsSweep(
            sweep_api, lambda: [*OPERATOR_LOGS, *sorted(runner_logs.glob("*.log"))]
        )
        sweep.start()
        yield local
        # The secrets sweep: no provider, caller or master key the session created in any
        # ConfigMap, status, event, operator or proxy log.
        sweep.list_now()
        sweep.stop()
        leaks = sweep.leaks()
        print(f"secrets sweep: {len(sweep.secrets)} secret values, {sweep.place_count()} places")
        assert not leaks, "secret values where none may be:\n" + "\n".join(leaks)


@pytest.fixture(scope="session")
def monkeypatch_session() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="session")
def api(cluster: LocalCluster) -> Iterator[client.ApiClient]:
    with cluster.api_client() as api_client:
        yield api_client


@pytest.fixture
def namespace(api: client.ApiClient) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture(scope="module")
def docker_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerEngine]:
    """A Docker engine for the module's tests (installed under CI), or the module skipped."""
    engine = DockerEngine(
        log_path=tmp_path_factory.mktemp("docker") / "dockerd.log",
        install=bool(os.environ.get("CI")),
    )
    try:
        engine.start()
    except DockerUnavailable as why:
        pytest.skip(f"no Docker engine can run on this machine: {why}")
    yield engine
    engine.stop()


@pytest.fixture
def process_runner(
    cluster: LocalCluster, namespace: str, tmp_path: Path
) -> Iterator[ProcessRunner]:
    """The process runner for the test's namespace: real processes for its pods. A managed
    Ollama's new volume holds the tiny model as `llama3.2`, the model the tests declare."""
    with ProcessRunner(
        cluster.kubeconfig, namespace=namespace, workdir=tmp_path, ollama_models=["llama3.2"]
    ) as runner:
        yield runner


# The namespace the session's operator believes it runs in, as the chart tells it from the
# downward API: its NetworkPolicies admit operator pods from there only.
OPERATOR_NAMESPACE = "llmroute-system"
# The session's operator enforces an apiBase allow-list in this namespace only (the chart's
# apiBase.allowedHostsByNamespace); every other namespace allows any host.
API_BASE_POLICY_NAMESPACE = "apibase-allow-list"
API_BASE_ALLOWED_HOSTS = ["127.0.0.1", "*.allowed.test"]


class OperatorProcess:
    """`llmroute run` as a separate process, exactly as a user starts it."""

    def __init__(
        self,
        kubeconfig: Path,
        log_path: Path,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.args = list(args)
        self.env = dict(env or {})
        self.namespace = self.env.get("POD_NAMESPACE")
        self.popen: subprocess.Popen | None = None
        OPERATOR_LOGS.append(log_path)

    def start(self) -> None:
        port = free_port()
        # The operator's own metrics, for the local Prometheus (tests/e2e/test_observability.py).
        self.metrics_address = f"127.0.0.1:{free_port()}"
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "llmroute",
                    "run",
                    "--kubeconfig",
                    str(self.kubeconfig),
                    "--liveness",
                    f"http://127.0.0.1:{port}/healthz",
                    "--metrics",
                    self.metrics_address,
                    *self.args,
                ],
                # No fetch of LiteLLM's price map from the network.
                env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.liveness_url = f"http://127.0.0.1:{port}/healthz"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"operator exited:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.liveness_url, timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"operator not live:\n{self.log()}")

    def stop(self, timeout: float = 20) -> int:
        assert self.popen is not None
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]


@pytest.fixture(scope="session")
def operator(
    cluster: LocalCluster, api: client.ApiClient, tmp_path_factory: pytest.TempPathFactory
):
    core = client.CoreV1Api(api)
    if not core.list_namespace(field_selector=f"metadata.name={OPERATOR_NAMESPACE}").items:
        core.create_namespace({"metadata": {"name": OPERATOR_NAMESPACE}})
    proc = OperatorProcess(
        cluster.kubeconfig,
        tmp_path_factory.mktemp("operator") / "operator.log",
        env={
            "POD_NAMESPACE": OPERATOR_NAMESPACE,
            API_BASE_POLICY_ENV: json.dumps(
                {"allowedHostsByNamespace": {API_BASE_POLICY_NAMESPACE: API_BASE_ALLOWED_HOSTS}}
            ),
        },
    )
    proc.start()
    yield proc
    if proc.popen.poll() is None:
        proc.stop()


@pytest.fixture
def allow_list_namespace(api: client.ApiClient) -> Iterator[str]:
    """The namespace where the session's operator enforces its apiBase allow-list."""
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": API_BASE_POLICY_NAMESPACE}})
    yield API_BASE_POLICY_NAMESPACE
    core.delete_namespace(API_BASE_POLICY_NAMESPACE, propagation_policy="Background")
