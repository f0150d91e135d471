"""Every reason a condition of an LLMRoute or a ModelQuota can carry, in one place.

The code sets conditions with these names only (a unit test refuses a string literal as the
reason of a set_condition call), and docs/operations.md lists each one with what to do about
it: tests/unit/test_condition_reasons.py compares ROUTE_REASONS and QUOTA_REASONS with the
page, both ways, and checks that the code uses every reason listed here. A new reason is a
constant here, an entry in its kind's table, and a row on the page.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

# -- shared by several conditions -----------------------------------------------------------------

READY: Final = "Ready"
PENDING: Final = "Pending"
INVALID_SPEC: Final = "InvalidSpec"

# -- LLMRoute -------------------------------------------------------------------------------------

# ConfigValid
VALID: Final = "Valid"
API_BASE_NOT_ALLOWED: Final = "ApiBaseNotAllowed"
LITELLM_REJECTED: Final = "LiteLLMRejected"
REJECTED_BY_API_SERVER: Final = "RejectedByAPIServer"
CHILD_NAME_TAKEN: Final = "ChildNameTaken"
# SecretsResolved
FOUND: Final = "Found"
SECRET_NOT_FOUND: Final = "SecretNotFound"
# Applied (and Ready, which repeats Applied's reason when an apply or prune failed)
APPLIED: Final = "Applied"
APPLY_FAILED: Final = "ApplyFailed"
# ProxyAvailable: otherwise the reason of the proxy Deployment's own Available condition
NO_DEPLOYMENT: Final = "NoDeployment"
UNKNOWN: Final = "Unknown"  # the Deployment's Available condition carries no reason
# OllamaReady
NO_STATEFULSET: Final = "NoStatefulSet"
PROGRESSING: Final = "Progressing"
NOT_READY: Final = "NotReady"
POD_FAILING: Final = "PodFailing"
MODEL_MISSING: Final = "ModelMissing"
UNREACHABLE: Final = "Unreachable"
REACHABLE: Final = "Reachable"
# LimitsExact
NO_LIMITS: Final = "NoLimits"
SHARED: Final = "Shared"
SINGLE_PROCESS: Final = "SingleProcess"
DIVIDED_ACROSS_PROCESSES: Final = "DividedAcrossProcesses"
# OperatorAccess
OPERATOR_NAMESPACE: Final = "OperatorNamespace"
OPERATOR_NAMESPACE_UNKNOWN: Final = "OperatorNamespaceUnknown"
# Exposed
HTTP_ROUTE_APPLIED: Final = "HTTPRouteApplied"
INGRESS_APPLIED: Final = "IngressApplied"
GATEWAY_API_NOT_INSTALLED: Final = "GatewayAPINotInstalled"
# Ready, when the first of its inputs (llmroute.route.status.READY_INPUTS) that is not True is
# one of these; a failed Applied gives Ready its own reason instead (APPLY_FAILED).
NOT_TRUE: Final[Mapping[str, str]] = {
    condition: f"{condition}NotTrue"
    for condition in (
        "ConfigValid",
        "SecretsResolved",
        "ProxyAvailable",
        "OllamaReady",
        "Exposed",
    )
}

# Reasons the operator copies from the Kubernetes objects it observes rather than chooses:
# those of the proxy Deployment's Available condition (the Deployment controller's own).
DEPLOYMENT_AVAILABLE_REASONS: Final = ("MinimumReplicasAvailable", "MinimumReplicasUnavailable")

# -- ModelQuota -----------------------------------------------------------------------------------

ROUTE_NOT_FOUND: Final = "RouteNotFound"
# Ready
NO_MATCHING_TARGETS: Final = "NoMatchingTargets"
SHADOW: Final = "Shadow"
ENFORCED: Final = "Enforced"
CALLER_NOT_DECLARED: Final = "CallerNotDeclared"
TASK_NOT_DECLARED: Final = "TaskNotDeclared"
# Synced
SYNCED: Final = "Synced"
NO_PROXY_REPLICAS: Final = "NoProxyReplicas"
SCRAPE_FAILED: Final = "ScrapeFailed"

# -- by kind and condition type: what docs/operations.md lists ------------------------------------

ROUTE_REASONS: Final[Mapping[str, tuple[str, ...]]] = {
    "Ready": (READY, PENDING, APPLY_FAILED, *NOT_TRUE.values()),
    "ConfigValid": (
        VALID,
        INVALID_SPEC,
        LITELLM_REJECTED,
        REJECTED_BY_API_SERVER,
        API_BASE_NOT_ALLOWED,
        CHILD_NAME_TAKEN,
    ),
    "SecretsResolved": (FOUND, SECRET_NOT_FOUND),
    "Applied": (APPLIED, APPLY_FAILED),
    "ProxyAvailable": (*DEPLOYMENT_AVAILABLE_REASONS, UNKNOWN, PENDING, NO_DEPLOYMENT),
    "OllamaReady": (
        READY,
        REACHABLE,
        NOT_READY,
        MODEL_MISSING,
        NO_STATEFULSET,
        POD_FAILING,
        PROGRESSING,
        UNREACHABLE,
    ),
    "LimitsExact": (NO_LIMITS, SINGLE_PROCESS, SHARED, DIVIDED_ACROSS_PROCESSES),
    "OperatorAccess": (OPERATOR_NAMESPACE, OPERATOR_NAMESPACE_UNKNOWN),
    "Exposed": (HTTP_ROUTE_APPLIED, INGRESS_APPLIED, GATEWAY_API_NOT_INSTALLED),
}

QUOTA_REASONS: Final[Mapping[str, tuple[str, ...]]] = {
    "Ready": (
        ENFORCED,
        SHADOW,
        NO_MATCHING_TARGETS,
        CALLER_NOT_DECLARED,
        TASK_NOT_DECLARED,
        INVALID_SPEC,
        ROUTE_NOT_FOUND,
    ),
    "Synced": (SYNCED, NO_PROXY_REPLICAS, SCRAPE_FAILED, ROUTE_NOT_FOUND),
}
