"""Where a process spends its time, sampled from outside with py-spy (no code change needed).

py-spy is pinned in the test extra (not a dependency of llmroute itself). Without it, the
harnesses skip profiling and say so in their results.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


class Sampler:
    """`py-spy record` of one process into collapsed stacks, from start() to stop()."""

    def __init__(self, pid: int, out: Path, rate: int = 50, output_format: str = "raw") -> None:
        self.pid = pid
        self.out = out
        self.rate = rate
        # "raw": collapsed stacks (summarize, share); "flamegraph": an SVG.
        self.output_format = output_format
        self._popen: subprocess.Popen | None = None

    def start(self) -> bool:
        binary = py_spy()
        if binary is None:
            return False
        self._popen = subprocess.Popen(
            [
                binary,
                "record",
                "--format",
                self.output_format,
                "--rate",
                str(self.rate),
                # Sampling without pausing the process: its timings stay as they are.
                "--nonblocking",
                "--subprocesses",
                "--output",
                str(self.out),
                "--pid",
                str(self.pid),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return True

    def stop(self) -> None:
        if self._popen is None:
            return
        if self._popen.poll() is None:
            self._popen.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        try:
            self._popen.wait(60)
        except subprocess.TimeoutExpired:
            self._popen.kill()
            self._popen.wait()
        self._popen = None


def _frame(frame: str) -> str:
    """'function (path/to/module.py:12)' without the line number."""
    return re.sub(r":\d+\)$", ")", frame)


def summarize(path: Path, *, top: int = 25, within: str | None = None) -> dict[str, Any]:
    """The functions with the largest inclusive share of samples (and their self share).

    `within`: only samples whose stack has a frame matching this regular expression (e.g.
    the handler's module), shares relative to those.
    """
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {"samples": 0, "functions": []}
    pattern = re.compile(within) if within else None
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_frame(f) for f in stack.split(";")]
        if pattern and not any(pattern.search(f) for f in frames):
            continue
        n = int(count)
        total += n
        for name in set(frames):
            inclusive[name] += n
        own[frames[-1]] += n
    functions = [
        {
            "function": name,
            "inclusive": round(n / total, 3),
            "self": round(own[name] / total, 3),
        }
        for name, n in inclusive.most_common(top)
    ]
    return {"samples": total, "functions": functions}


def share(path: Path, pattern: str, *, within: str | None = None) -> float | None:
    """Share of the samples (optionally of those matching `within`) whose stack matches."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    wanted = re.compile(pattern)
    scope = re.compile(within) if within else None
    total = hits = 0
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        if scope and not scope.search(stack):
            continue
        total += int(count)
        if wanted.search(stack):
            hits += int(count)
    return round(hits / total, 3) if total else None
