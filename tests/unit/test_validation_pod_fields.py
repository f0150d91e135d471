"""`llmroute validate` refuses, offline, what the CRD accepts but the API server refuses in the
objects the operator renders: requests above limits, malformed label keys and values,
tolerations Kubernetes does not accept. One rule each; tests/e2e/test_route_apply.py shows the
API server refusing the same specs."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from llmroute.api.pod_fields import parse_quantity
from llmroute.api.validation import validate
from manifests import OPENAI_ROUTE, ROUTE, changed

# (base, changes, path the error names, words of its message)
REFUSED_BY_THE_API_SERVER = {
    "proxy-requests-above-limits": (
        OPENAI_ROUTE,
        {"spec.proxy": {"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1500m"}}}},
        "spec.proxy.resources.requests.cpu",
        "must be less than or equal to the cpu limit (1500m)",
    ),
    "ollama-requests-above-limits": (
        ROUTE,
        {
            "spec.ollama.resources": {
                "requests": {"memory": "2Gi"},
                "limits": {"memory": "1024Mi"},
            }
        },
        "spec.ollama.resources.requests.memory",
        "must be less than or equal to the memory limit (1024Mi)",
    ),
    "negative-quantity": (
        OPENAI_ROUTE,
        {"spec.proxy": {"resources": {"limits": {"memory": "-1Gi"}}}},
        "spec.proxy.resources.limits.memory",
        "must be greater than or equal to 0",
    ),
    "node-selector-key": (
        ROUTE,
        {"spec.ollama.nodeSelector": {"gpu type": "a100"}},
        'spec.ollama.nodeSelector["gpu type"]',
        "not a valid label key",
    ),
    "node-selector-value": (
        ROUTE,
        {"spec.ollama.nodeSelector": {"gpu": "a100/80g"}},
        'spec.ollama.nodeSelector["gpu"]',
        "not a valid label value",
    ),
    "access-pod-label-key": (
        OPENAI_ROUTE,
        {"spec.access": {"from": [{"podSelector": {"matchLabels": {"-app": "web"}}}]}},
        'spec.access.from[0].podSelector.matchLabels["-app"]',
        "not a valid label key",
    ),
    "access-namespace-label-value": (
        OPENAI_ROUTE,
        {"spec.access": {"from": [{"namespaceSelector": {"matchLabels": {"team": "a" * 64}}}]}},
        'spec.access.from[0].namespaceSelector.matchLabels["team"]',
        "at most 63 characters",
    ),
    "access-expression-key": (
        OPENAI_ROUTE,
        {
            "spec.access": {
                "from": [
                    {
                        "podSelector": {
                            "matchExpressions": [{"key": "example.com/", "operator": "Exists"}]
                        }
                    }
                ]
            }
        },
        "spec.access.from[0].podSelector.matchExpressions[0].key",
        "not a valid label key",
    ),
    "access-expression-in-without-values": (
        OPENAI_ROUTE,
        {
            "spec.access": {
                "from": [{"podSelector": {"matchExpressions": [{"key": "app", "operator": "In"}]}}]
            }
        },
        "spec.access.from[0].podSelector.matchExpressions[0].values",
        "must be specified when operator is In or NotIn",
    ),
    "access-expression-exists-with-values": (
        OPENAI_ROUTE,
        {
            "spec.access": {
                "from": [
                    {
                        "namespaceSelector": {
                            "matchExpressions": [
                                {"key": "team", "operator": "Exists", "values": ["a"]}
                            ]
                        }
                    }
                ]
            }
        },
        "spec.access.from[0].namespaceSelector.matchExpressions[0].values",
        "must be empty when operator is Exists or DoesNotExist",
    ),
    "access-expression-value": (
        OPENAI_ROUTE,
        {
            "spec.access": {
                "from": [
                    {
                        "podSelector": {
                            "matchExpressions": [
                                {"key": "app", "operator": "NotIn", "values": ["ok", "not ok"]}
                            ]
                        }
                    }
                ]
            }
        },
        "spec.access.from[0].podSelector.matchExpressions[0].values[1]",
        "not a valid label value",
    ),
    "toleration-exists-with-value": (
        ROUTE,
        {"spec.ollama.tolerations": [{"key": "gpu", "operator": "Exists", "value": "true"}]},
        "spec.ollama.tolerations[0].value",
        "must be empty when operator is Exists",
    ),
    "toleration-equal-without-key": (
        ROUTE,
        {"spec.ollama.tolerations": [{"operator": "Equal", "value": "true"}]},
        "spec.ollama.tolerations[0].operator",
        "must be Exists when key is empty",
    ),
    "toleration-seconds-without-no-execute": (
        ROUTE,
        {
            "spec.ollama.tolerations": [
                {"key": "gpu", "effect": "NoSchedule", "tolerationSeconds": 30}
            ]
        },
        "spec.ollama.tolerations[0].effect",
        "must be NoExecute when tolerationSeconds is set",
    ),
    "toleration-key": (
        ROUTE,
        {"spec.ollama.tolerations": [{"key": "nvidia.com/gpu/x", "operator": "Exists"}]},
        "spec.ollama.tolerations[0].key",
        "not a valid label key",
    ),
    "toleration-value": (
        ROUTE,
        {"spec.ollama.tolerations": [{"key": "gpu", "value": "yes please"}]},
        "spec.ollama.tolerations[0].value",
        "not a valid label value",
    ),
}


@pytest.mark.parametrize(
    ("base", "changes", "path", "words"),
    REFUSED_BY_THE_API_SERVER.values(),
    ids=REFUSED_BY_THE_API_SERVER,
)
def test_each_case_the_api_server_refuses_names_its_field(
    base: dict[str, Any], changes: dict[str, Any], path: str, words: str
) -> None:
    errors = validate(changed(base, changes))
    assert any(error.path == path and words in error.message for error in errors), errors
    assert len(errors) == 1, errors


ACCEPTED_BY_THE_API_SERVER = {
    "requests-equal-limits": {
        "spec.proxy": {"resources": {"requests": {"cpu": "1"}, "limits": {"cpu": "1000m"}}}
    },
    "requests-below-limits-in-other-units": {
        "spec.proxy": {"resources": {"requests": {"memory": "1G"}, "limits": {"memory": "1Gi"}}}
    },
    "request-without-limit": {"spec.proxy": {"resources": {"requests": {"cpu": 4}}}},
    "qualified-label-keys": {
        "spec.access": {
            "from": [
                {
                    "podSelector": {
                        "matchLabels": {"app.kubernetes.io/name": "web", "tier": ""},
                        "matchExpressions": [
                            {"key": "example.com/team", "operator": "In", "values": ["a-1"]},
                            {"key": "legacy", "operator": "DoesNotExist"},
                        ],
                    },
                    "namespaceSelector": {},
                }
            ]
        }
    },
}


@pytest.mark.parametrize("changes", ACCEPTED_BY_THE_API_SERVER.values(), ids=lambda _: "")
def test_what_the_api_server_accepts_passes(changes: dict[str, Any]) -> None:
    assert validate(changed(OPENAI_ROUTE, changes)) == []


def test_ollama_scheduling_the_api_server_accepts_passes() -> None:
    route = changed(
        ROUTE,
        {
            "spec.ollama.nodeSelector": {"kubernetes.io/arch": "amd64", "gpu": "a100_80g"},
            "spec.ollama.tolerations": [
                {"operator": "Exists"},
                {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"},
                {"key": "gpu", "value": "true", "effect": "NoExecute", "tolerationSeconds": 60},
            ],
        },
    )
    assert validate(route) == []


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Decimal("0.5")),
        ("1.5", Decimal("1.5")),
        ("1Gi", Decimal(2**30)),
        ("1e3", Decimal(1000)),
        (2, Decimal(2)),
        ("1x", None),
        (True, None),
    ],
)
def test_quantities_parse_as_kubernetes_reads_them(text: object, value: Decimal | None) -> None:
    assert parse_quantity(text) == value
