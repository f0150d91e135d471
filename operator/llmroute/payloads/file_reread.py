"""Files a proxy hook reads on every request, looked at no more than once a second.

Shipped in the route's ConfigMap as llmroute_file_reread.py next to config.yaml (on the
proxy's PYTHONPATH), for the hooks there to import; standard library only.

A hook that reads a mounted Secret or a rendered policy per request must see a change
without a restart, but a stat() per file per request is measurable in the proxy's CPU
(docs/benchmarks.md). FileReread parses a file once, then looks at it again only when
`interval` seconds have passed since it last looked: a change takes effect within that
interval, and requests in between cost a dictionary lookup.

Kubelet updates a mounted Secret by swapping a symlink to a new directory, so the path then
resolves to a new inode; an in-place rewrite changes the mtime or size. Either changes the
signature compared here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from time import monotonic
from typing import Any, Final

# How long a change may go unseen: a rotated key works, and a revoked one stops working,
# within this many seconds.
REREAD_INTERVAL_SECONDS: Final = 1.0


class FileReread:
    """Parsed file contents, re-read when the file changes, checked at most every `interval`."""

    def __init__(
        self,
        interval: float = REREAD_INTERVAL_SECONDS,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.interval = interval
        self.clock = clock or monotonic
        self._lock = threading.Lock()
        # path -> (when it was last looked at, its signature or None if absent, parsed value)
        self._entries: dict[Path, tuple[float, tuple[int, int, int] | None, Any]] = {}

    def read(self, path: Path, parse: Callable[[bytes], Any]) -> Any:
        """The parsed contents of `path`; None while it is missing or unreadable."""
        now = self.clock()
        cached = self._entries.get(path)
        if cached is not None and now - cached[0] < self.interval:
            return cached[2]
        try:
            stat = path.stat()
            signature: tuple[int, int, int] | None = (
                stat.st_ino,
                stat.st_mtime_ns,
                stat.st_size,
            )
            if cached is not None and cached[1] == signature:
                value = cached[2]
            else:
                value = parse(path.read_bytes())
        except OSError:  # missing or unreadable: no contents
            signature, value = None, None
        with self._lock:
            self._entries[path] = (now, signature, value)
        return value
