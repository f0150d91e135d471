"""Waiting on conditions with a deadline (never a bare sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    probe: Callable[[], T], *, timeout: float = 60, interval: float = 0.2, what: str = "condition"
) -> T:
    """Call `probe` until it returns something truthy; return that. Exceptions count as no."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = probe()
            if result:
                return result
            last = result
        except Exception as error:
            last = error
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout}s (last: {last!r})")
        time.sleep(interval)
