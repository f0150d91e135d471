"""Periodic work over the objects of a kopf index: one loop for the operator, no timers.

kopf's timers and daemons put a finalizer on every object they run for (kopf must stop them
before the object goes), so deleting such an object, or its namespace, waits for a running
operator, and hangs while there is none. A PeriodicWork does what a per-object timer did,
with no finalizer: every `interval` seconds it runs `work(key)` for each key that `keys()`
returns (the keys of a kopf index, read on the event loop that updates it), each in a worker
thread, and never two runs for one key at once: a run that outlasts the interval skips the
next tick for its key, as a timer waits for its handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass
class PeriodicWork(Generic[K]):
    name: str
    interval: float
    keys: Callable[[], Iterable[K]]
    work: Callable[[K], None]
    logger: logging.Logger
    _in_flight: dict[K, asyncio.Future] = field(default_factory=dict, init=False)
    _task: asyncio.Task | None = field(default=None, init=False)

    def start(self) -> None:
        """Start the loop on the running event loop (the operator's)."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Stop the loop; runs already in their threads finish on their own."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def running(self) -> set[K]:
        """The keys whose run is still going."""
        return {key for key, run in self._in_flight.items() if not run.done()}

    def tick(self) -> None:
        """Start a run for every key that has none in flight; forget keys that are gone."""
        loop = asyncio.get_running_loop()
        keys = list(self.keys())  # a snapshot, taken on the loop that updates the index
        for key in keys:
            running = self._in_flight.get(key)
            if running is not None and not running.done():
                continue
            self._in_flight[key] = loop.run_in_executor(None, self._run_one, key)
        for key in set(self._in_flight) - set(keys):
            if self._in_flight[key].done():
                del self._in_flight[key]

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.tick()

    def _run_one(self, key: K) -> None:
        try:
            self.work(key)
        except Exception:
            # The next tick tries again, as kopf retried a failed timer.
            self.logger.exception("%s for %s failed", self.name, key)
