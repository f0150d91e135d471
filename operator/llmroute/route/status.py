"""An LLMRoute's status conditions: pure functions of what the reconcile observed.

The reconcile (llmroute.route.reconcile) applies the children and hands over what it saw: the
proxy Deployment, the Ollama's state. These functions decide the conditions, and Ready from
the others; they touch no cluster and are unit-tested on their own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from llmroute import reasons
from llmroute.api.route import SecretReference
from llmroute.conditions import condition_status, ordered, set_condition
from llmroute.render.sizing import LimitDivision

# The route's condition types, in the order status lists them.
CONDITION_ORDER: Final = (
    "Ready",
    "ConfigValid",
    "SecretsResolved",
    "Applied",
    "ProxyAvailable",
    "OllamaReady",
    "Exposed",
    "LimitsExact",
    "OperatorAccess",
)
# The conditions Ready sums up: those without which the gateway does not serve. LimitsExact and
# OperatorAccess only inform (approximate limits still serve; quota accounting and
# status.ollama need the operator's access, requests do not), so they never hold back Ready.
# Exposed (with spec.expose) counts: a route asked to be reachable from outside is not Ready
# until its HTTPRoute or Ingress is there.
READY_INPUTS: Final = (
    "ConfigValid",
    "SecretsResolved",
    "Applied",
    "ProxyAvailable",
    "OllamaReady",
    "Exposed",
)
# Limits named one by one in the LimitsExact message; the rest are counted.
LIMITS_LISTED: Final = 5


# HTTP codes of a refusal that only a change of the spec can cure: the API server found the
# object invalid (422) or malformed (400). Anything else (403 Forbidden from RBAC, a quota, a
# conflict, a server error) may heal without one.
SPEC_REFUSAL_CODES: Final = frozenset({400, 422})


@dataclass(frozen=True)
class Refusal:
    """The API server refused to apply (or delete) one of the route's objects.

    message is the API server's own (its Status message), which names fields and object
    names, never an object's data.
    """

    verb: str  # apply, dry-run or delete
    kind: str
    name: str
    code: int  # the HTTP status
    message: str

    def __str__(self) -> str:
        return f"{self.verb} {self.kind} {self.name}: {self.message}"

    @property
    def refuses_the_spec(self) -> bool:
        return self.code in SPEC_REFUSAL_CODES


def refusal_condition(refusals: Sequence[Refusal]) -> tuple[str, str, str]:
    """(condition type, reason, message) for refusals of a route's objects.

    A refusal of the spec (invalid object) is ConfigValid=False, RejectedByAPIServer: like any
    spec error it lasts until the spec changes. Any other is Applied=False, ApplyFailed.
    """
    of_the_spec = [r for r in refusals if r.refuses_the_spec]
    if of_the_spec:
        return "ConfigValid", reasons.REJECTED_BY_API_SERVER, "; ".join(map(str, of_the_spec))
    return "Applied", reasons.APPLY_FAILED, "; ".join(map(str, refusals))


def applied_condition(
    conditions: list[dict], refusals: Sequence[Refusal] | None, generation: int | None
) -> list[dict]:
    """Applied: True once every object is applied and every unwanted child pruned."""
    if refusals:
        return set_condition(
            conditions,
            "Applied",
            False,
            reasons.APPLY_FAILED,
            "; ".join(map(str, refusals)),
            generation,
        )
    return set_condition(
        conditions,
        "Applied",
        True,
        reasons.APPLIED,
        "every child object is applied and the unwanted ones deleted",
        generation,
    )


def proxy_condition(
    conditions: list[dict], deployment: Mapping[str, Any] | None, generation: int | None
) -> list[dict]:
    """ProxyAvailable from the proxy Deployment (as applied, or as an event brought it)."""
    if deployment is None:
        return set_condition(
            conditions,
            "ProxyAvailable",
            False,
            reasons.NO_DEPLOYMENT,
            "no proxy Deployment",
            generation,
        )
    status = deployment.get("status") or {}
    available = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Available"), None
    )
    if available is None:
        return set_condition(
            conditions,
            "ProxyAvailable",
            None,
            reasons.PENDING,
            "the proxy Deployment reports no availability yet",
            generation,
        )
    ready, wanted = (
        status.get("readyReplicas", 0),
        (deployment.get("spec") or {}).get("replicas", 1),
    )
    return set_condition(
        conditions,
        "ProxyAvailable",
        available.get("status") == "True",
        available.get("reason") or reasons.UNKNOWN,
        f"{ready}/{wanted} proxy replicas ready",
        generation,
    )


def operator_access_condition(
    conditions: list[dict], operator_namespace: str | None, generation: int | None
) -> list[dict]:
    """OperatorAccess: from which namespace the route's NetworkPolicies admit operator pods."""
    if operator_namespace:
        return set_condition(
            conditions,
            "OperatorAccess",
            True,
            reasons.OPERATOR_NAMESPACE,
            f"the NetworkPolicies admit operator pods from namespace {operator_namespace} only",
            generation,
        )
    return set_condition(
        conditions,
        "OperatorAccess",
        False,
        reasons.OPERATOR_NAMESPACE_UNKNOWN,
        "the operator's namespace is unknown (POD_NAMESPACE unset), so the NetworkPolicies "
        "admit no operator pod: quota spend cannot be scraped and status.ollama not read from "
        "a pod; the gateway serves as usual",
        generation,
    )


def limits_condition(
    conditions: list[dict], division: LimitDivision, generation: int | None
) -> list[dict]:
    """LimitsExact: whether the rpm/tpm limits hold as written, and if not, by how much not.

    Without Redis each LiteLLM process counts a limit on its own and gets a share of it
    (llmroute.render.sizing.limit_processes): with more processes running than the share
    was divided by, or shares rounded up, together they allow more than the limit; and a
    process refuses at its share even while others have room, so under uneven load fewer
    requests than the limit pass.
    """
    processes = division.processes
    if not division.shares:
        return set_condition(
            conditions,
            "LimitsExact",
            True,
            reasons.NO_LIMITS,
            "no target has an rpm/tpm limit",
            generation,
        )
    if division.exact:
        how = (
            "the proxies share their counters in Redis (while Redis is unreachable each "
            "process counts on its own: docs/quota.md)"
            if processes.shared
            else "one LiteLLM process counts them"
        )
        return set_condition(
            conditions,
            "LimitsExact",
            True,
            reasons.SHARED if processes.shared else reasons.SINGLE_PROCESS,
            f"rpm/tpm limits hold for the whole gateway: {how}",
            generation,
        )
    fewest, most = processes.replicas
    running = (
        f"{processes.fewest} processes ({fewest} replicas x {processes.workers} workers)"
        if fewest == most
        else f"{processes.fewest} processes at minReplicas ({fewest} x {processes.workers} "
        f"workers), up to {processes.most} at maxReplicas ({most})"
    )
    details = []
    for share in division.shares[:LIMITS_LISTED]:
        low, high = share.totals(processes)
        total = f"{low}" if low == high else f"{low}-{high}"
        details.append(
            f"{share.deployment} {share.kind} {share.limit}: {share.per_process} per process, "
            f"{total} in total"
        )
    more = len(division.shares) - LIMITS_LISTED
    if more > 0:
        details.append(f"and {more} more")
    return set_condition(
        conditions,
        "LimitsExact",
        False,
        reasons.DIVIDED_ACROSS_PROCESSES,
        "without spec.redis each LiteLLM process counts rpm/tpm on its own; limits "
        f"are divided over {running}: {'; '.join(details)}. A process refuses at its share "
        "even while others have room, so under uneven load fewer requests than the limit pass",
        generation,
    )


def with_ready(conditions: list[dict], generation: int | None) -> list[dict]:
    """`conditions` with Ready set from READY_INPUTS, in CONDITION_ORDER."""
    failing = [t for t in READY_INPUTS if condition_status(conditions, t) not in (None, "True")]
    if failing and failing[0] == "Applied":
        applied = next(c for c in conditions if c.get("type") == "Applied")
        return ordered(
            set_condition(
                conditions,
                "Ready",
                False,
                # The object and the API's message belong where `kubectl get` shows them,
                # not behind a generic AppliedNotTrue.
                applied.get("reason") or reasons.APPLY_FAILED,
                applied.get("message") or "",
                generation,
            ),
            CONDITION_ORDER,
        )
    if failing:
        return ordered(
            set_condition(
                conditions,
                "Ready",
                False,
                reasons.NOT_TRUE[failing[0]],
                f"{', '.join(failing)} not True",
                generation,
            ),
            CONDITION_ORDER,
        )
    if condition_status(conditions, "ProxyAvailable") is None:
        return ordered(
            set_condition(
                conditions, "Ready", False, reasons.PENDING, "waiting for the proxy", generation
            ),
            CONDITION_ORDER,
        )
    return ordered(
        set_condition(conditions, "Ready", True, reasons.READY, "the gateway serves", generation),
        CONDITION_ORDER,
    )


def missing_secret_keys(
    refs: Iterable[SecretReference],
    namespace: str,
    secret_data: Mapping[str, Mapping[str, Any] | None],
) -> list[str]:
    """What SecretsResolved reports: each referenced Secret or key that does not exist.

    secret_data: each referenced Secret's data (None: the Secret does not exist).
    """
    problems = []
    for ref in refs:
        data = secret_data.get(ref.name)
        if data is None:
            problem = f"Secret {namespace}/{ref.name} not found ({ref.field})"
        elif ref.key is not None and ref.key not in data:
            problem = f"Secret {namespace}/{ref.name} has no key {ref.key!r} ({ref.field})"
        else:
            continue
        if problem not in problems:
            problems.append(problem)
    return problems


def status_changed(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether writing `wanted` changes the stored status (kopf's own bookkeeping aside).

    A field that is None is absent (what a merge patch makes of it).
    """
    return _comparable(current) != _comparable(wanted)


def status_patch(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch that turns status `current` into `wanted`.

    A merge patch leaves out a missing key as it is: a field `wanted` drops (status.ollama
    once spec.ollama is gone) must be sent as null. kopf's bookkeeping is left to kopf.
    """
    patch = {k: v for k, v in wanted.items() if k != "kopf"}
    patch.update({k: None for k in current if k not in wanted and k != "kopf"})
    return patch


def _comparable(status: Mapping[str, Any]) -> dict:
    return {k: v for k, v in status.items() if k != "kopf" and v is not None}
