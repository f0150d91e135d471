"""A container's probes, run the way the kubelet runs them, so that Ready means serving.

startupProbe first (liveness and readiness wait for it); then readinessProbe and
livenessProbe, each on its own schedule: ``initialDelaySeconds`` after the container
started, then every ``periodSeconds``, each attempt bounded by ``timeoutSeconds``.
Readiness turns True after ``successThreshold`` successes in a row and False after
``failureThreshold`` failures in a row; it starts False. A container without a
readinessProbe is ready once it runs (and its startupProbe, if any, passed). Failing the
startup or liveness probe ``failureThreshold`` times in a row asks for a restart.

httpGet (2xx and 3xx succeed), tcpSocket and exec are supported; exec runs the command
in the pod's network namespace with container paths mapped by the caller.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["Probe", "Prober", "parse_probe", "probe_once"]


@dataclass(frozen=True)
class Probe:
    action: str  # "httpGet" | "tcpSocket" | "exec"
    host: str
    port: int = 0
    path: str = "/"
    scheme: str = "HTTP"
    headers: tuple[tuple[str, str], ...] = ()
    command: tuple[str, ...] = ()
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3


def _port(value: int | str, container: Mapping[str, Any]) -> int:
    if isinstance(value, int) or str(value).isdigit():
        return int(value)
    for port in container.get("ports") or []:
        if port.get("name") == value:
            return int(port["containerPort"])
    raise ValueError(f"probe names no port of the container: {value!r}")


def parse_probe(
    container: Mapping[str, Any],
    which: str,
    *,
    host: str,
    rewrite: Callable[[str], str] = lambda value: value,
) -> Probe | None:
    """The container's ``which`` probe ("readinessProbe", ...), or None when it has none."""
    spec = container.get(which)
    if not spec:
        return None
    timing = {
        "initial_delay": float(spec.get("initialDelaySeconds", 0)),
        "period": float(spec.get("periodSeconds", 10)),
        "timeout": float(spec.get("timeoutSeconds", 1)),
        "success_threshold": int(spec.get("successThreshold", 1)),
        "failure_threshold": int(spec.get("failureThreshold", 3)),
    }
    if "httpGet" in spec:
        http = spec["httpGet"]
        return Probe(
            "httpGet",
            host=http.get("host") or host,
            port=_port(http["port"], container),
            path=http.get("path") or "/",
            scheme=http.get("scheme", "HTTP"),
            headers=tuple((h["name"], h["value"]) for h in http.get("httpHeaders") or []),
            **timing,
        )
    if "tcpSocket" in spec:
        tcp = spec["tcpSocket"]
        return Probe(
            "tcpSocket", host=tcp.get("host") or host, port=_port(tcp["port"], container), **timing
        )
    if "exec" in spec:
        command = tuple(rewrite(part) for part in spec["exec"].get("command") or [])
        return Probe("exec", host=host, command=command, **timing)
    raise ValueError(f"{which}: unsupported probe {sorted(spec)}")


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def probe_once(probe: Probe, exec_prefix: Sequence[str] = ()) -> tuple[bool, str]:
    """One attempt: (success, what happened)."""
    try:
        if probe.action == "httpGet":
            url = f"{probe.scheme.lower()}://{probe.host}:{probe.port}{probe.path}"
            request = urllib.request.Request(url, headers=dict(probe.headers))
            request.add_header("User-Agent", "kube-probe/localcluster")
            try:
                with _OPENER.open(request, timeout=probe.timeout) as response:
                    status = response.status
            except urllib.error.HTTPError as error:
                status = error.code
            return 200 <= status < 400, f"HTTP {status}"
        if probe.action == "tcpSocket":
            with socket.create_connection((probe.host, probe.port), timeout=probe.timeout):
                return True, "connected"
        result = subprocess.run(
            [*exec_prefix, *probe.command],
            capture_output=True,
            timeout=probe.timeout,
        )
        return result.returncode == 0, f"exit {result.returncode}"
    except Exception as error:  # any failure to get an answer is a failed probe
        return False, str(error) or type(error).__name__


class Prober:
    """Runs one container's probes on a thread of its own until stop().

    ``on_change`` is called (from the prober's thread) whenever ``ready`` or ``started``
    changes; ``on_failure(reason)`` once, when the startup or liveness probe gives up.
    """

    def __init__(
        self,
        name: str,
        *,
        startup: Probe | None,
        readiness: Probe | None,
        liveness: Probe | None,
        exec_prefix: Sequence[str] = (),
        on_change: Callable[[], None] = lambda: None,
        on_failure: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self.name = name
        self.startup, self.readiness, self.liveness = startup, readiness, liveness
        self.exec_prefix = list(exec_prefix)
        self.on_change, self.on_failure = on_change, on_failure
        self.started = False
        self.ready = False
        self.failed = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"probe-{name}", daemon=True)

    def start(self) -> Prober:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _set(self, *, started: bool | None = None, ready: bool | None = None) -> None:
        changed = False
        if started is not None and started != self.started:
            self.started, changed = started, True
        if ready is not None and ready != self.ready:
            self.ready, changed = ready, True
            log.info("probe: %s %s", self.name, "ready" if ready else "not ready")
        if changed:
            self.on_change()

    def _fail(self, which: str, detail: str) -> None:
        self.failed = f"{which} probe failed: {detail}"
        log.warning("probe: %s %s", self.name, self.failed)
        self._set(ready=False)
        self.on_failure(self.failed)

    def _wait_until(self, moment: float) -> bool:
        """False when stopped before ``moment``."""
        return not self._stop.wait(max(0.0, moment - time.monotonic()))

    def _run(self) -> None:
        began = time.monotonic()
        if self.startup is not None:
            probe, failures = self.startup, 0
            moment = began + probe.initial_delay
            while True:
                if not self._wait_until(moment):
                    return
                ok, detail = probe_once(probe, self.exec_prefix)
                if ok:
                    break
                failures += 1
                if failures >= probe.failure_threshold:
                    self._fail("startup", detail)
                    return
                moment += probe.period
        self._set(started=True, ready=self.readiness is None)
        started = time.monotonic()
        schedule: dict[str, float] = {}
        streak: dict[str, int] = {}  # successes (>0) or failures (<0) in a row
        for which, probe in (("readiness", self.readiness), ("liveness", self.liveness)):
            if probe is not None:
                # After a startup probe the others begin at once (their delay counts from
                # the container's start, which is long past).
                schedule[which] = max(started, began + probe.initial_delay)
                streak[which] = 0
        while schedule:
            which = min(schedule, key=schedule.__getitem__)
            if not self._wait_until(schedule[which]):
                return
            probe = self.readiness if which == "readiness" else self.liveness
            assert probe is not None
            ok, detail = probe_once(probe, self.exec_prefix)
            run = streak[which]
            streak[which] = (max(run, 0) + 1) if ok else (min(run, 0) - 1)
            if which == "readiness":
                if streak[which] >= probe.success_threshold:
                    self._set(ready=True)
                elif -streak[which] >= probe.failure_threshold:
                    self._set(ready=False)
            elif -streak[which] >= probe.failure_threshold:
                self._fail("liveness", detail)
                return
            schedule[which] += probe.period
