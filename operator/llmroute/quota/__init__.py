"""Where money is counted: the spend ledger, scraping the proxies, usage, the quota's status.

Pure parts (counters, ledger, status, the row builder of usage) take typed values and return
frozen dataclasses or JSON-ready dicts; scrape, sync, effects and usage.gather_usage talk to
the cluster. The typed ModelQuota and the budget periods are in llmroute.api.
"""

from llmroute.api.quota import quota_effects
from llmroute.quota.effects import quota_effects_for_route

__all__ = ["quota_effects", "quota_effects_for_route"]
