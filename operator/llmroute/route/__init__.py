"""The LLMRoute kind: its reconcile (I/O) and its status machine (pure).

reconcile fetches what a route needs, renders it (llmroute.render), applies the children and
writes the status; status decides the conditions from what was observed; ollama observes the
route's Ollama (model presence) for its OllamaReady condition.
"""
