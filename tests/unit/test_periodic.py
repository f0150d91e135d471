"""PeriodicWork: the operator-wide loop that replaced kopf's per-object timers.

Most tests call tick() themselves, as the loop does every interval, so that what each tick
starts is known; one test lets the loop tick on its own.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from collections.abc import Callable

import pytest

from llmroute.periodic import PeriodicWork

LOGGER = logging.getLogger("test")
DEADLINE = 30.0  # seconds to wait for what the worker threads do at once
NEVER = 3600.0  # an interval the loop never reaches in a test


async def wait_until(check: Callable[[], object], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not check():
        if loop.time() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.01)


class Recorder:
    def __init__(self) -> None:
        self.runs: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, key: str) -> None:
        with self.lock:
            self.runs[key] += 1


def test_each_tick_runs_every_key_there_is_now() -> None:
    keys = ["a", "b"]
    work = Recorder()

    async def scenario() -> None:
        periodic = PeriodicWork("count", NEVER, lambda: keys, work, LOGGER)
        periodic.tick()
        await wait_until(lambda: not periodic.running(), "the first tick's runs")
        assert work.runs == {"a": 1, "b": 1}
        periodic.tick()
        await wait_until(lambda: not periodic.running(), "the second tick's runs")
        assert work.runs == {"a": 2, "b": 2}
        keys[:] = ["b", "c"]  # a left the index, c joined it
        periodic.tick()
        await wait_until(lambda: not periodic.running(), "the third tick's runs")
        assert work.runs == {"a": 2, "b": 3, "c": 1}

    asyncio.run(scenario())


def test_a_slow_run_is_not_overlapped_by_later_ticks() -> None:
    release = threading.Event()
    work = Recorder()

    def slow(key: str) -> None:
        work(key)
        release.wait(DEADLINE)

    async def scenario() -> None:
        periodic = PeriodicWork("slow", NEVER, lambda: ["k"], slow, LOGGER)
        periodic.tick()
        await wait_until(lambda: work.runs["k"] == 1, "the slow run")
        for _ in range(20):
            periodic.tick()
        assert periodic.running() == {"k"}
        release.set()
        await wait_until(lambda: not periodic.running(), "the slow run's end")
        assert work.runs["k"] == 1
        # Once it is over, the next tick runs the key again.
        periodic.tick()
        await wait_until(lambda: not periodic.running(), "the next run")
        assert work.runs["k"] == 2

    asyncio.run(scenario())


def test_a_failing_run_is_logged_and_the_next_tick_runs_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []

    def failing(key: str) -> None:
        calls.append(key)
        raise RuntimeError("the API server is away")

    async def scenario() -> None:
        periodic = PeriodicWork("sync", NEVER, lambda: ["k"], failing, LOGGER)
        periodic.tick()
        await wait_until(lambda: not periodic.running(), "the failing run")
        periodic.tick()
        await wait_until(lambda: not periodic.running(), "the second run")
        assert calls == ["k", "k"]

    with caplog.at_level(logging.ERROR, logger="test"):
        asyncio.run(scenario())
    assert "the API server is away" in caplog.text


def test_the_loop_ticks_on_its_own_until_stopped() -> None:
    work = Recorder()

    async def scenario() -> None:
        periodic = PeriodicWork("loop", 0.01, lambda: ["k"], work, LOGGER)
        periodic.start()
        task = periodic._task
        await wait_until(lambda: work.runs["k"] >= 3, "three runs from the loop's own ticks")
        await periodic.stop()
        assert task is not None and task.done()

    asyncio.run(scenario())
