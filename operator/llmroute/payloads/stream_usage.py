"""The LiteLLM proxy's stream-usage callback: every streamed chat completion is counted.

Shipped in the route's ConfigMap as llmroute_stream_usage.py next to config.yaml and
registered in litellm_settings.callbacks as ``llmroute_stream_usage.stream_usage``.
Standard library and litellm only; it never imports llmroute.

Why: OpenAI-protocol providers (OpenAI, Azure OpenAI, Groq, openai-compatible servers)
report a stream's usage only when asked (``stream_options.include_usage``). LiteLLM 1.106.2
asks on the caller's behalf only when every target of the requested model takes that option
(litellm/proxy/common_request_processing.py, _stream_usage_tracking_updates); in a chain that
mixes in Anthropic, Ollama or Gemini it does not, and such a stream is counted with 0 tokens
and 0 USD. This hook asks in every case, after LiteLLM's own decision, and marks the request
the way LiteLLM marks the ones it asks for itself (``_litellm_strip_stream_usage``), so the
proxy removes the usage chunk from the stream again when the caller did not ask for it.
Providers that do not take the option have it dropped (litellm_settings.drop_params) and
report usage anyway.
"""

from __future__ import annotations

from typing import Any

from litellm.integrations.custom_logger import CustomLogger

# LiteLLM's own marker for usage it asked for on the caller's behalf (litellm 1.106.2).
STRIP_MARKER = "_litellm_strip_stream_usage"


def ask_for_stream_usage(data: dict[str, Any]) -> dict[str, Any]:
    """The request with the provider asked for the stream's usage (unchanged if not a stream
    or if the caller asked already)."""
    if data.get("stream") is not True:
        return data
    options = data.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return data
    asked = dict(options) if isinstance(options, dict) else {}
    data["stream_options"] = {**asked, "include_usage": True}
    data[STRIP_MARKER] = True
    return data


class StreamUsage(CustomLogger):
    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict, call_type: Any
    ) -> dict:
        if call_type in ("completion", "acompletion"):
            return ask_for_stream_usage(data)
        return data


stream_usage = StreamUsage()
