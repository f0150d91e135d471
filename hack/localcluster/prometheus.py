"""A real Prometheus for the local cluster: it discovers llmroute's proxy pods through the
local API server and scrapes them at their pod addresses, and scrapes the operator.

The binary is the upstream build pinned in hack/versions.env (hack/build-tools.sh builds it
from the Go module proxy): Debian's package lacks Kubernetes service discovery. The scrape
configuration gives the series the labels the chart's ServiceMonitor gives them in a cluster
(job, namespace, service = the route's Service, pod, container, endpoint), so the chart's
dashboard and alert rules read them unchanged.

Only loopback and the pod network's 198.18.0.0/15 are ever scraped: a relabelling rule
drops every other target address before the first scrape.

`python -m localcluster.prometheus KUBECONFIG [OPERATOR_HOST:PORT]` runs one in the
foreground and prints its URL.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

import yaml

from . import tools
from .controlplane import free_port
from .tools import BUILD_COMMAND, REPO_ROOT
from .wait import wait_for

PROXY_JOB: Final = "llmroute-proxy"
OPERATOR_JOB: Final = "llmroute-operator"
# The chart's alert rules, a plain Prometheus rule file that the PrometheusRule embeds.
CHART_RULES: Final = REPO_ROOT / "charts/llmroute/rules/llmroute.rules.yaml"
# Targets outside these addresses are dropped (Prometheus anchors the expression).
ALLOWED_TARGET_ADDRESS: Final = r"(127\.[0-9]+\.[0-9]+\.[0-9]+|198\.1[89]\.[0-9]+\.[0-9]+):[0-9]+"
INSTALL_HINT: Final = f"build it with `{BUILD_COMMAND}`"


def binary(name: str = "prometheus") -> Path | None:
    """The pinned `prometheus` or `promtool` (hack/build-tools.sh); None when not built."""
    built = tools.binary(name)
    return built if os.access(built, os.X_OK) else None


def _guard() -> dict[str, Any]:
    return {"source_labels": ["__address__"], "regex": ALLOWED_TARGET_ADDRESS, "action": "keep"}


def _label_from(source: str, target: str) -> dict[str, Any]:
    return {"source_labels": [source], "target_label": target}


def scrape_config(
    kubeconfig: Path,
    operator_targets: Sequence[str] = (),
    *,
    interval: str = "5s",
    rule_files: Iterable[Path] = (),
    evaluation_interval: str | None = None,
) -> dict[str, Any]:
    """The Prometheus configuration: proxy pods found through the API server, the operator
    at the given HOST:PORT addresses."""
    pod_label = "__meta_kubernetes_pod_label_"
    proxies = {
        "job_name": PROXY_JOB,
        "metrics_path": "/metrics",
        "kubernetes_sd_configs": [{"role": "pod", "kubeconfig_file": str(kubeconfig)}],
        "relabel_configs": [
            # The proxies of every route (the ServiceMonitor selects their Services by the
            # same two labels), at their port named http (the ServiceMonitor's endpoint).
            {
                "source_labels": [
                    f"{pod_label}app_kubernetes_io_component",
                    f"{pod_label}app_kubernetes_io_managed_by",
                ],
                "regex": "proxy;llmroute",
                "action": "keep",
            },
            {
                "source_labels": ["__meta_kubernetes_pod_container_port_name"],
                "regex": "http",
                "action": "keep",
            },
            _guard(),
            _label_from("__meta_kubernetes_namespace", "namespace"),
            # A route's Service is named after the route (the ServiceMonitor's `service`).
            _label_from(f"{pod_label}llmroute_dev_route", "service"),
            _label_from("__meta_kubernetes_pod_name", "pod"),
            _label_from("__meta_kubernetes_pod_container_name", "container"),
            {"target_label": "endpoint", "replacement": "http"},
        ],
    }
    operator = {
        "job_name": OPERATOR_JOB,
        "metrics_path": "/metrics",
        "static_configs": [{"targets": list(operator_targets)}],
        "relabel_configs": [_guard()],
    }
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "evaluation_interval": evaluation_interval or interval,
        },
        "scrape_configs": [proxies, *([operator] if operator_targets else [])],
    }
    rules = [str(p) for p in rule_files]
    if rules:
        config["rule_files"] = rules
    return config


class LocalPrometheus:
    """`prometheus` on a loopback port with scrape_config(); a context manager."""

    def __init__(
        self,
        kubeconfig: Path,
        workdir: Path,
        operator_targets: Sequence[str] = (),
        *,
        interval: str = "5s",
        rule_files: Iterable[Path] = (),
        evaluation_interval: str | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.config = scrape_config(
            kubeconfig,
            operator_targets,
            interval=interval,
            rule_files=rule_files,
            evaluation_interval=evaluation_interval,
        )
        self.url = ""
        self._process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> str:
        program = binary()
        if program is None:
            raise FileNotFoundError(f"prometheus is not installed: {INSTALL_HINT}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_path = self.workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        log = (self.workdir / "prometheus.log").open("ab")
        self._process = subprocess.Popen(
            [
                str(program),
                f"--config.file={config_path}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--web.enable-lifecycle",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        wait_for(self._ready, timeout=timeout, what="Prometheus ready")
        return self.url

    def _ready(self) -> bool:
        assert self._process is not None
        if self._process.poll() is not None:
            raise RuntimeError(f"prometheus exited:\n{self.log()}")
        with _open(f"{self.url}/-/ready") as response:
            return response.status == 200

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def __enter__(self) -> LocalPrometheus:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.workdir / "prometheus.log").read_text(errors="replace")[-5000:]
        return ""

    # -- the HTTP API -----------------------------------------------------------

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; the `data` of a successful answer."""
        query = urllib.parse.urlencode(params)
        with _open(f"{self.url}/api/v1/{path}{'?' + query if query else ''}") as response:
            answer = json.loads(response.read())
        if answer.get("status") != "success":
            raise RuntimeError(f"Prometheus answered {answer}")
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's vector: [{metric: {...}, value: [t, "v"]}, ...]."""
        data = self.api("query", query=expr)
        if data["resultType"] != "vector":
            raise RuntimeError(f"not a vector: {data['resultType']} for {expr}")
        return data["result"]

    def active_targets(self) -> list[dict[str, Any]]:
        return self.api("targets", state="active")["activeTargets"]

    def alerts(self) -> list[dict[str, Any]]:
        return self.api("alerts")["alerts"]


def _open(url: str):
    # Never through a proxy from the environment: Prometheus listens on loopback.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return opener.open(url, timeout=10)


def main(argv: Sequence[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    import signal
    import tempfile
    import threading

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with (
        tempfile.TemporaryDirectory(prefix="llmroute-prometheus-") as workdir,
        LocalPrometheus(
            Path(argv[0]), Path(workdir), argv[1:], rule_files=[CHART_RULES]
        ) as prometheus,
    ):
        print(prometheus.url, flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
