"""Property: whatever spec the API server accepts, the operator renders objects it accepts too,
or refuses the spec naming the field; it never crashes.

Specs come from the CRD schemas (tests/crd_strategies.py): by the schema, and with one node
broken. Each goes to the real API server as a server-side dry-run create (with kubectl's strict
field validation); for each one accepted, the operator's offline path runs on the object the
server returned (defaults applied): validation, parsing, rendering, LiteLLM's config check.
Every object it renders must then pass a server-side dry-run apply, or a route would be
half-applied (some children changed, the next one refused). Hypothesis runs derandomized, so
every run checks the same specs.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from crd_strategies import ROUTE_NAMES, specs
from llmroute import kube
from llmroute.api import API_VERSION, GROUP, QUOTA_PLURAL, ROUTE_PLURAL, VERSION
from llmroute.api.quota import STATES, QuotaEffect, QuotaSpec, QuotaSpecError, route_targets
from llmroute.api.route import Route, SpecError, parse_route
from llmroute.api.validation import validate
from llmroute.quota.status import next_status
from llmroute.render import check_litellm_config, render_route
from llmroute.route.exposure import without_unserved_exposure
from manifests import ROUTE

pytestmark = pytest.mark.e2e

SPECS_PER_KIND = 500
# Fields of the manifests: where an error must point.
FIELD_ROOTS = ("spec", "metadata")
OPERATOR_NAMESPACE = "llmroute-system"

PROPERTY_SETTINGS = settings(
    max_examples=SPECS_PER_KIND,
    derandomize=True,
    database=None,
    deadline=None,
    # Shrinking a failure would repeat hundreds of requests; the failures are collected whole.
    phases=["explicit", "generate"],
    suppress_health_check=list(HealthCheck),
)


class Findings:
    """What the run saw, and every spec that broke the property, with the error."""

    def __init__(self) -> None:
        self.tally: collections.Counter[str] = collections.Counter()
        self.refused_fields: collections.Counter[str] = collections.Counter()
        self.defects: list[str] = []

    def defect(self, spec: Any, what: str) -> None:
        self.defects.append(f"{what}\n  spec: {json.dumps(spec, sort_keys=True)}")

    def report(self, kind: str, seconds: float) -> str:
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(self.tally.items()))
        fields = ", ".join(f"{k} {v}" for k, v in self.refused_fields.most_common(10))
        return f"{kind}: {counts}; {seconds:.1f} s\n  the API server's refusals by field: {fields}"


def dry_run_create(
    custom: client.CustomObjectsApi, namespace: str, plural: str, obj: dict, findings: Findings
) -> dict | None:
    """The object as the API server would store it, or None when it refuses it."""
    try:
        stored = custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, obj, dry_run="All", field_validation="Strict"
        )
    except ApiException as error:
        if error.status not in (400, 422):
            raise
        findings.tally["refused by the API server"] += 1
        causes = (json.loads(error.body).get("details") or {}).get("causes") or [{}]
        findings.refused_fields[re.sub(r"\[\d+\]", "[]", causes[0].get("field") or "?")] += 1
        return None
    findings.tally["accepted by the API server"] += 1
    return stored


def dry_run_apply(api: client.ApiClient, obj: dict) -> None:
    """Server-side apply `obj` as the operator does, without storing it."""
    meta = obj["metadata"]
    kube._call(
        api,
        "PATCH",
        kube.object_path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"]),
        query_params=[("fieldManager", kube.FIELD_MANAGER), ("force", "true"), ("dryRun", "All")],
        header_params={"Content-Type": "application/apply-patch+yaml"},
        body=json.dumps(obj, ensure_ascii=False),  # as kube.apply sends it
    )


def names_a_field(path: str) -> bool:
    return path.split(".")[0].split("[")[0] in FIELD_ROOTS


def render_and_dry_run(
    api: client.ApiClient,
    route: Route,
    quotas: list[QuotaEffect],
    spec: Any,
    findings: Findings,
) -> None:
    """Render the route; every object must pass a dry-run apply, unless LiteLLM refused."""
    rendered = render_route(route, quotas=quotas, operator_namespace=OPERATOR_NAMESPACE)
    problems = check_litellm_config(rendered.config)
    if problems:
        findings.tally["refused by the LiteLLM check"] += 1
        return
    # As the operator does: an HTTPRoute where the cluster has no Gateway API is left out.
    rendered, _ = without_unserved_exposure(api, rendered)
    objects = [rendered.generated_secret] if rendered.generated_secret else []
    for obj in [*objects, *rendered.objects]:
        try:
            dry_run_apply(api, obj)
        except ApiException as error:
            message = json.loads(error.body).get("message") if error.body else error.reason
            findings.defect(spec, f"{obj['kind']} {obj['metadata']['name']} refused: {message}")
            return
    findings.tally["rendered and accepted"] += 1


def run_property(check: Callable[..., None], findings: Findings, kind: str) -> None:
    started = time.monotonic()
    check()
    seconds = time.monotonic() - started
    print(findings.report(kind, seconds))
    assert findings.tally["generated"] >= SPECS_PER_KIND
    assert findings.tally["accepted by the API server"] > 0
    assert not findings.defects, "\n".join(findings.defects)


def test_every_route_spec_the_api_accepts_renders_or_is_refused_by_field(
    api: client.ApiClient, namespace: str
) -> None:
    custom = client.CustomObjectsApi(api)
    findings = Findings()

    @PROPERTY_SETTINGS
    @given(spec=specs("LLMRoute"), name=ROUTE_NAMES)
    def check(spec: dict, name: str) -> None:
        findings.tally["generated"] += 1
        manifest = {"apiVersion": API_VERSION, "kind": "LLMRoute", "metadata": {"name": name}}
        stored = dry_run_create(
            custom, namespace, ROUTE_PLURAL, {**manifest, "spec": spec}, findings
        )
        if stored is None:
            return
        errors = validate(stored)
        if errors:
            findings.tally["refused by validation"] += 1
            for error in errors:
                if not names_a_field(error.path):
                    findings.defect(spec, f"validation error names no field: {error}")
            return
        try:
            route = parse_route(stored)
        except SpecError as error:
            findings.tally["refused while parsing"] += 1
            if not names_a_field(error.field):
                findings.defect(spec, f"parse error names no field: {error}")
            return
        render_and_dry_run(api, route, [], spec, findings)

    run_property(check, findings, "LLMRoute")


def test_every_quota_spec_the_api_accepts_shapes_a_route_or_is_refused_by_field(
    api: client.ApiClient, namespace: str
) -> None:
    custom = client.CustomObjectsApi(api)
    route = parse_route({**ROUTE, "metadata": {**ROUTE["metadata"], "namespace": namespace}})
    findings = Findings()
    now = dt.datetime(2026, 11, 30, 12, tzinfo=dt.UTC)

    @PROPERTY_SETTINGS
    @given(spec=specs("ModelQuota"), state=st.sampled_from(STATES))
    def check(spec: dict, state: str) -> None:
        findings.tally["generated"] += 1
        manifest = {"apiVersion": API_VERSION, "kind": "ModelQuota", "metadata": {"name": "q"}}
        stored = dry_run_create(
            custom, namespace, QUOTA_PLURAL, {**manifest, "spec": spec}, findings
        )
        if stored is None:
            return
        errors = validate(stored)
        if errors:
            findings.tally["refused by validation"] += 1
            for error in errors:
                if not names_a_field(error.path):
                    findings.defect(spec, f"validation error names no field: {error}")
            return
        try:
            QuotaSpec.from_quota(stored)
        except QuotaSpecError as error:
            findings.tally["refused while parsing"] += 1
            if not names_a_field(error.field):
                findings.defect(spec, f"quota error names no field: {error}")
            return
        # The sync's pure part, on a quota never synced, against the route it references.
        next_status(stored, targets=route_targets(route), scrapes=[], now=now)
        effect = QuotaEffect.from_quota({**stored, "status": {"state": state}})
        render_and_dry_run(api, route, [effect], spec, findings)

    run_property(check, findings, "ModelQuota")
