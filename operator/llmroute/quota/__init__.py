"""Where money is counted: budget periods, the spend ledger, scraping the proxies, usage.

Pure parts (periods, counters, spec, ledger, status, the row builder of usage) take plain
values and return frozen dataclasses or JSON-ready dicts; scrape, sync, effects and
usage.gather_usage talk to the cluster.
"""

from llmroute.quota.effects import quota_effects, quota_effects_for_route
from llmroute.quota.periods import PERIODS, period_bounds

__all__ = ["PERIODS", "period_bounds", "quota_effects", "quota_effects_for_route"]
