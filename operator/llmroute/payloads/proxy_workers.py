"""The proxy container's command: LiteLLM's own CLI, with a listening socket per worker.

`litellm --num_workers N` runs uvicorn's supervisor, whose workers all accept from the one
socket it listens on. The first worker the kernel wakes accepts every connection waiting
(uvloop accepts until the queue is empty), so a few keep-alive clients that connect together
end up mostly on one worker, and stay there, while the others idle. Here each worker listens
on a socket of its own, bound to the same address with SO_REUSEPORT, and the kernel spreads
new connections across those sockets by a hash of each connection's addresses.

Nothing else changes: this runs LiteLLM's CLI with the same arguments (it reads the config,
sets up the Prometheus multi-process directory that merges the workers' /metrics, and so
on) and only replaces the uvicorn.run it ends with. With several workers, a small supervisor
of its own starts them, each serving with uvicorn's public `Server.run(sockets=...)`; it
starts a new one when one exits (retired after --max_requests_before_restart, or crashed),
stops every worker and exits when one cannot start, and on SIGTERM or SIGINT stops every
worker, each finishing its requests. A worker listens only once its app has started. The
supervisor does not ping its workers: the pod's liveness probe watches the container. With
one worker it is uvicorn.run itself.

Run as `python3 -m llmroute_proxy_workers <the litellm CLI's arguments>`, with this file's
directory on PYTHONPATH (the worker processes import it again by that name). Standard
library, uvicorn and litellm only.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE

logger = logging.getLogger("uvicorn.error")

_uvicorn_run = uvicorn.run
# As uvicorn's supervisor: each worker imports the app afresh, nothing is shared by fork.
_spawn = multiprocessing.get_context("spawn")
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
RESTART_PAUSE_SECONDS = 1.0
# A worker that exits sooner than this after its start is restarted after the pause too.
MIN_LIFETIME_SECONDS = 5.0


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A socket bound to host:port that other processes may bind as well (SO_REUSEPORT).

    Bound, not listening: the kernel sends connections only to listening sockets, and
    uvicorn listens on it (in create_server) once the app has started, so no connection
    waits on a worker still importing litellm, or is reset when its start fails."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def serve(config: uvicorn.Config) -> None:
    """A worker: uvicorn's server on a listening socket of its own."""
    config.configure_logging()
    try:
        own = reuse_port_socket(config.host, config.port)
    except OSError as error:
        logger.error("Cannot bind %s:%d: %s", config.host, config.port, error)
        sys.exit(STARTUP_FAILURE)
    server = uvicorn.Server(config)
    server.run(sockets=[own])
    if not server.started:
        # The app's startup failed: as uvicorn.run, so the supervisor stops.
        sys.exit(STARTUP_FAILURE)


class Supervisor:
    """Keeps `workers` processes serving until a stop signal or a worker that cannot start."""

    def __init__(self, config: uvicorn.Config, workers: int) -> None:
        self.config = config
        self.workers = workers
        self.processes: list[BaseProcess] = []
        self.exit_code = 0
        # Signal handlers only write here; the loop wakes on it.
        self._wake_read, self._wake_write = os.pipe()
        self._stopping = False
        self._started_at: dict[int | None, float] = {}

    def _start_worker(self) -> None:
        process = _spawn.Process(target=serve, args=(self.config,), name="llmroute-worker")
        process.start()
        self.processes.append(process)
        self._started_at[process.pid] = time.monotonic()
        logger.info("Started worker process [%d]", process.pid)

    def _on_stop_signal(self, signum: int, _frame: Any) -> None:
        self._stopping = True
        os.write(self._wake_write, b"\0")

    def run(self) -> int:
        for signum in _STOP_SIGNALS:
            signal.signal(signum, self._on_stop_signal)
        logger.info("Started supervisor process [%d]", os.getpid())
        try:
            for _ in range(self.workers):
                self._start_worker()
            while not self._stopping:
                self._replace_exited()
        finally:
            # Also when starting a worker failed (say, the pod's process limit): the
            # workers still running must not outlive the supervisor.
            self._stop_all()
        return self.exit_code

    def _replace_exited(self) -> None:
        """Waits for a worker to exit (or a stop signal) and starts one in its place."""
        sentinels = {p.sentinel: p for p in self.processes}
        for ready in wait([self._wake_read, *sentinels]):
            process = sentinels.get(ready)
            if process is None or self._stopping:
                return
            process.join()
            self.processes.remove(process)
            lived = time.monotonic() - self._started_at.pop(process.pid, 0.0)
            if process.exitcode == STARTUP_FAILURE:
                logger.error("Worker process [%d] could not start", process.pid)
                self.exit_code = STARTUP_FAILURE
                self._stopping = True
                return
            if process.exitcode:
                logger.warning("Worker process [%d] died (%s)", process.pid, process.exitcode)
            else:
                logger.info("Worker process [%d] retired", process.pid)
            if process.exitcode or lived < MIN_LIFETIME_SECONDS:
                # A crash, or an exit right after starting: a pause, so a worker that keeps
                # exiting does not spin; a stop signal still ends it at once.
                wait([self._wake_read], timeout=RESTART_PAUSE_SECONDS)
            if self._stopping:
                return
            self._start_worker()

    def _stop_all(self) -> None:
        for process in self.processes:
            if process.exitcode is None and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        for process in self.processes:
            # Each finishes its requests (uvicorn's graceful shutdown); the pod's
            # terminationGracePeriodSeconds bounds the wait.
            process.join()
        logger.info("Stopping supervisor process [%d]", os.getpid())


def run(app: Any, **kwargs: Any) -> None:
    """uvicorn.run, with a listening socket per worker when there are several."""
    workers = kwargs.pop("workers", None) or 1
    if workers <= 1 or kwargs.get("reload") or kwargs.get("fd") is not None:
        _uvicorn_run(app, workers=workers, **kwargs)
        return
    # The supervisor holds no listening socket: one that never accepts would still get its
    # share of connections.
    exit_code = Supervisor(uvicorn.Config(app, **kwargs), workers).run()
    if exit_code:
        sys.exit(exit_code)


def main() -> None:
    from litellm.proxy.proxy_cli import run_server

    uvicorn.run = run
    run_server(prog_name="litellm")


if __name__ == "__main__":
    main()
