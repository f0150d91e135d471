"""The LLMRoute and ModelQuota API: names, and a typed, validated view of specs."""

GROUP = "llmroute.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
ROUTE_PLURAL = "llmroutes"
QUOTA_PLURAL = "modelquotas"
