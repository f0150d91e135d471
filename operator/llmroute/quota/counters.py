"""LiteLLM's usage counters as a proxy replica exposes them on /metrics.

Names and labels follow litellm 1.106.2 (litellm/integrations/prometheus.py and
litellm/types/integrations/prometheus.py). On every successful LLM call the proxy increments,
with one label set per call:

- litellm_spend_metric_total          US dollars (response_cost)
- litellm_input_tokens_metric_total   prompt tokens
- litellm_output_tokens_metric_total  completion tokens
- litellm_requests_metric_total       1

All four carry `model_id` (the deployment's model_info.id, which llmroute renders as
"<model name>/<provider>/<model>", see llmroute.api.route.deployment_ids), `requested_model` (the
route's model name), `model` (the provider's model id, without the provider prefix),
`api_provider` (LiteLLM's provider: "openai" for openai-compatible targets too),
`api_key_alias` / `team` / `user` (the caller, set by the gateway's auth hook) and one
`tag_task_<task>` label per declared task. `model_id` is what maps a series back to one target
of the spec exactly, so the ledger counts by it.

The counters are process-lifetime: they start at zero when the proxy starts (with several
workers LiteLLM sums them over a shared PROMETHEUS_MULTIPROC_DIR, recycled workers included)
and series are never dropped (LiteLLM's prometheus_metrics_ttl_seconds is unset).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from llmroute.api.quota import ledger_key

SPEND_METRIC: Final = "litellm_spend_metric"
INPUT_TOKENS_METRIC: Final = "litellm_input_tokens_metric"
OUTPUT_TOKENS_METRIC: Final = "litellm_output_tokens_metric"
REQUESTS_METRIC: Final = "litellm_requests_metric"
USAGE_METRICS: Final = (SPEND_METRIC, INPUT_TOKENS_METRIC, OUTPUT_TOKENS_METRIC, REQUESTS_METRIC)
# prometheus_client's default process collector; absent in LiteLLM's multi-worker mode.
PROCESS_START_METRIC: Final = "process_start_time_seconds"

MODEL_ID_LABEL: Final = "model_id"
MODEL_NAME_LABEL: Final = "requested_model"
PROVIDER_MODEL_LABEL: Final = "model"
PROVIDER_LABEL: Final = "api_provider"
CALLER_LABEL: Final = "api_key_alias"
TASK_LABEL_PREFIX: Final = "tag_task_"


@dataclass(frozen=True)
class Usage:
    """What some requests cost: US dollars, tokens in and out, and how many there were."""

    spend_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            spend_usd=self.spend_usd + other.spend_usd,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            requests=self.requests + other.requests,
        )

    def minus(self, earlier: Usage) -> Usage:
        return Usage(
            spend_usd=self.spend_usd - earlier.spend_usd,
            input_tokens=self.input_tokens - earlier.input_tokens,
            output_tokens=self.output_tokens - earlier.output_tokens,
            requests=self.requests - earlier.requests,
        )

    def below(self, earlier: Usage) -> bool:
        """True when any counter is lower than in `earlier`: the counters were reset since."""
        return (
            self.spend_usd < earlier.spend_usd
            or self.input_tokens < earlier.input_tokens
            or self.output_tokens < earlier.output_tokens
            or self.requests < earlier.requests
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "spendUSD": self.spend_usd,
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            "requests": self.requests,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Usage:
        data = data or {}
        return cls(
            spend_usd=float(data.get("spendUSD") or 0.0),
            input_tokens=int(data.get("inputTokens") or 0),
            output_tokens=int(data.get("outputTokens") or 0),
            requests=int(data.get("requests") or 0),
        )


@dataclass(frozen=True)
class CounterSample:
    """One series of a usage counter: which counter, its labels, its value."""

    metric: str  # one of USAGE_METRICS
    labels: Mapping[str, str] = field(default_factory=dict)
    value: float = 0.0


def parse_metrics(text: str) -> list[Metric]:
    """The metric families of a Prometheus text exposition (ValueError when unreadable)."""
    return list(text_string_to_metric_families(text))


def counter_samples(families: Iterable[Metric]) -> list[CounterSample]:
    """The current values of the usage counters (their `_total` series; `_created` is not)."""
    samples = []
    for family in families:
        if family.name not in USAGE_METRICS:
            continue
        total = f"{family.name}_total"
        for sample in family.samples:
            if sample.name == total and math.isfinite(sample.value):
                samples.append(CounterSample(family.name, dict(sample.labels), sample.value))
    return samples


def process_start_seconds(families: Iterable[Metric]) -> float | None:
    """When the process that answered started (Unix seconds), if it says so."""
    for family in families:
        if family.name == PROCESS_START_METRIC:
            for sample in family.samples:
                return float(sample.value)
    return None


def add_sample(usage: Usage, sample: CounterSample) -> Usage:
    """`usage` with one more series of a counter added in."""
    if sample.metric == SPEND_METRIC:
        return replace(usage, spend_usd=usage.spend_usd + sample.value)
    field_name = _COUNT_FIELDS.get(sample.metric)
    if field_name is None:
        raise ValueError(f"not a usage counter: {sample.metric!r}")
    return replace(usage, **{field_name: getattr(usage, field_name) + round(sample.value)})


_COUNT_FIELDS: Final = {
    INPUT_TOKENS_METRIC: "input_tokens",
    OUTPUT_TOKENS_METRIC: "output_tokens",
    REQUESTS_METRIC: "requests",
}


def usage_by_deployment(
    samples: Iterable[CounterSample], *, caller: str | None = None, tag: str | None = None
) -> dict[str, Usage]:
    """Counter totals of one replica per deployment (model_id), all other labels summed over.

    With `caller` or `tag`, only the series of that caller (label api_key_alias, which the
    gateway sets to the declared caller's name) or of requests tagged with that task (label
    tag_task_<tag> "true") count, each under its ledger key (llmroute.api.quota.ledger_key).
    Series are added in a fixed order, so the same exposition always gives the same floats
    (a ledger compares them with the last ones to find resets).
    """
    grouped: defaultdict[str, list[CounterSample]] = defaultdict(list)
    for sample in samples:
        deployment = sample.labels.get(MODEL_ID_LABEL)
        if not deployment:
            continue
        if caller is not None and sample.labels.get(CALLER_LABEL) != caller:
            continue
        if tag is not None and sample.labels.get(f"{TASK_LABEL_PREFIX}{tag}") != "true":
            continue
        grouped[ledger_key(deployment, caller, tag)].append(sample)
    totals: dict[str, Usage] = {}
    for deployment, series in sorted(grouped.items()):
        usage = Usage()
        for sample in sorted(series, key=lambda s: (s.metric, sorted(s.labels.items()))):
            usage = add_sample(usage, sample)
        totals[deployment] = usage
    return totals
