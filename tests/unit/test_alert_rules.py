"""The chart's alert and recording rules: valid, each alert unit-tested with promtool."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from built_tools import require_tools
from localcluster import prometheus as local_prometheus
from localcluster import tools

RULES = local_prometheus.CHART_RULES
RULE_TESTS = Path(__file__).parent / "data" / "prometheus" / "llmroute.rules.test.yaml"


def promtool() -> Path:
    require_tools("promtool")
    return tools.binary("promtool")


def alert_names() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


def test_rules_are_valid() -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", RULES], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_and_they_pass() -> None:
    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert tested == alert_names()
    result = subprocess.run(
        [promtool(), "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_severity_and_a_summary() -> None:
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in (r for r in group["rules"] if "alert" in r):
            assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]
