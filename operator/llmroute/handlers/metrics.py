"""Keep the operator's gauges (llmroute.metrics) in step with the objects it watches.

Every watch event of an LLMRoute or a ModelQuota, the initial listing included, refreshes that
object's series; a deletion removes them. Wiring only: the numbers come from llmroute.metrics.
"""

from __future__ import annotations

from typing import Any

import kopf

from llmroute.api import GROUP, QUOTA_PLURAL, ROUTE_PLURAL, VERSION
from llmroute.metrics import OBJECTS


@kopf.on.event(GROUP, VERSION, ROUTE_PLURAL)
def route_metrics(type: str | None, body: kopf.Body, **_: Any) -> None:
    if type == "DELETED":
        OBJECTS.route_gone(body)
    else:
        OBJECTS.route_seen(body)


@kopf.on.event(GROUP, VERSION, QUOTA_PLURAL)
def quota_metrics(type: str | None, body: kopf.Body, **_: Any) -> None:
    if type == "DELETED":
        OBJECTS.quota_gone(body)
    else:
        OBJECTS.quota_seen(body)
