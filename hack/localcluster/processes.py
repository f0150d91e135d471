"""What every process the local cluster starts shares: it dies with its parent, and its
log's last lines explain a failure."""

from __future__ import annotations

import ctypes
import signal
from pathlib import Path

_PR_SET_PDEATHSIG = 1

try:
    # Resolved before any fork: a child of a threaded parent should only make the call.
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _prctl = None


def die_with_parent() -> None:
    """A preexec_fn: the child gets SIGKILL when the thread that started it dies.

    Test processes must never outlive the test run, even when it crashes.
    """
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def tail(path: Path | None, lines: int = 30) -> str:
    """The last lines of a log file ("" when there is none)."""
    if path is None:
        return ""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
