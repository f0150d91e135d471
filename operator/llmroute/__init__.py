"""llmroute: a Kubernetes operator for a governed, OpenAI-compatible LLM gateway."""

__version__ = "0.1.0"
