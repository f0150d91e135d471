"""The local Prometheus's configuration: what it discovers, the labels it gives, what it
never scrapes."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from built_tools import require_tools
from localcluster import prometheus as local_prometheus
from localcluster import tools


def config(tmp_path: Path) -> dict:
    return local_prometheus.scrape_config(
        tmp_path / "kubeconfig",
        ["127.0.0.1:9999"],
        rule_files=[local_prometheus.CHART_RULES],
    )


def test_every_job_keeps_only_loopback_and_pod_network_targets(tmp_path: Path) -> None:
    for job in config(tmp_path)["scrape_configs"]:
        guards = [r for r in job["relabel_configs"] if r.get("source_labels") == ["__address__"]]
        assert guards and all(g["action"] == "keep" for g in guards), job["job_name"]


@pytest.mark.parametrize(
    ("address", "kept"),
    [
        ("127.0.0.1:4000", True),
        ("127.0.1.7:4000", True),
        ("198.18.1.2:4000", True),
        ("198.19.0.10:4000", True),
        ("10.96.0.1:443", False),
        ("192.168.1.1:4000", False),
        ("192.0.2.10:4000", False),
        ("172.17.0.2:4000", False),
        ("8.8.8.8:53", False),
        ("198.20.0.1:4000", False),
        ("1198.18.0.1:4000", False),
    ],
)
def test_the_address_guard(address: str, kept: bool) -> None:
    # Prometheus anchors relabelling expressions at both ends.
    assert bool(re.fullmatch(local_prometheus.ALLOWED_TARGET_ADDRESS, address)) is kept


def test_proxy_pods_get_the_service_monitor_labels(tmp_path: Path) -> None:
    (proxies,) = [
        j for j in config(tmp_path)["scrape_configs"] if j["job_name"] == "llmroute-proxy"
    ]
    assert proxies["kubernetes_sd_configs"] == [
        {"role": "pod", "kubeconfig_file": str(tmp_path / "kubeconfig")}
    ]
    targets = {r.get("target_label"): r for r in proxies["relabel_configs"]}
    assert targets["service"]["source_labels"] == ["__meta_kubernetes_pod_label_llmroute_dev_route"]
    assert targets["namespace"]["source_labels"] == ["__meta_kubernetes_namespace"]
    assert targets["pod"]["source_labels"] == ["__meta_kubernetes_pod_name"]


def test_the_rule_jobs_match_the_chart(tmp_path: Path) -> None:
    """The alert rules select the proxies by the job the ServiceMonitor and this config set."""
    rules = local_prometheus.CHART_RULES.read_text()
    assert f'job="{local_prometheus.PROXY_JOB}"' in rules
    monitors = (tools.REPO_ROOT / "charts/llmroute/templates/servicemonitor.yaml").read_text()
    assert f"replacement: {local_prometheus.PROXY_JOB}" in monitors
    assert f"replacement: {local_prometheus.OPERATOR_JOB}" in monitors


def test_promtool_accepts_the_config(tmp_path: Path) -> None:
    require_tools("promtool")
    (tmp_path / "kubeconfig").write_text("apiVersion: v1\nkind: Config\n")
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config(tmp_path)))
    result = subprocess.run(
        [tools.binary("promtool"), "check", "config", "--syntax-only", path],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
