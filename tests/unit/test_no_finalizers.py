"""No llmroute handler makes kopf put a finalizer on an object.

A finalizer stays on the object while the operator is gone, so deleting a route, a quota or
their namespace would hang until the operator comes back (docs/design.md: no finalizers).
kopf adds its finalizer for every timer and daemon, and for a delete handler that is not
optional; periodic work is one operator-wide loop instead (llmroute.periodic).
"""

from __future__ import annotations

import kopf

import llmroute.handlers  # noqa: F401  (registers the handlers)


def test_no_handler_requires_a_finalizer() -> None:
    registry = kopf.get_default_registry()
    spawning = registry._spawning.get_all_handlers()
    changing = registry._changing.get_all_handlers()
    assert changing, "the handlers are registered"
    assert [h.id for h in spawning] == []  # timers and daemons
    assert [h.id for h in changing if h.requires_finalizer] == []
