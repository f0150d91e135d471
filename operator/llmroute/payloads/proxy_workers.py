"""The proxy container's command: LiteLLM's own CLI, with a listening socket per worker.

`litellm --num_workers N` runs uvicorn's supervisor, whose workers all accept from the one
socket it listens on: whichever worker is idle first takes the next connection, so a few
keep-alive clients (each holding its connection for many requests) end up mostly on one
worker while the others idle. Here each worker listens on a socket of its own, bound to the
same address with SO_REUSEPORT, and the kernel spreads new connections across them.

Nothing else changes: this runs LiteLLM's CLI with the same arguments (it reads the config,
sets up the Prometheus multi-process directory that merges the workers' /metrics, and so
on) and only replaces the uvicorn.run it ends with, by uvicorn's own supervisor with one
difference, where a worker's socket comes from. The supervisor still health-checks its
workers (--timeout_worker_healthcheck), starts a new one when one dies or retires after its
--max_requests_before_restart, stops when a worker cannot start at all, and on SIGTERM
stops every worker, each finishing its requests. With one worker it is uvicorn.run itself.

Run as `python3 -m llmroute_proxy_workers <the litellm CLI's arguments>`, with this file's
directory on PYTHONPATH (the worker processes import it again by that name). Standard
library, uvicorn and litellm only.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import multiprocess

logger = logging.getLogger("uvicorn.error")

_uvicorn_run = uvicorn.run


def reuse_port_socket(host: str, port: int, backlog: int) -> socket.socket:
    """A listening socket on host:port that other processes may bind as well (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


class SocketPerWorkerProcess(multiprocess.Process):
    """A worker of uvicorn's supervisor that listens on a socket of its own."""

    def target(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            own = reuse_port_socket(self.config.host, self.config.port, self.config.backlog)
        except OSError as error:
            # As a failed start: the supervisor stops rather than restarting it forever.
            logger.error("Cannot listen on %s:%d: %s", self.config.host, self.config.port, error)
            sys.exit(STARTUP_FAILURE)
        super().target([own])


def run(app: Any, **kwargs: Any) -> None:
    """uvicorn.run, with a listening socket per worker when there are several."""
    if (kwargs.get("workers") or 1) <= 1 or kwargs.get("reload") or kwargs.get("fd") is not None:
        _uvicorn_run(app, **kwargs)
        return
    config = uvicorn.Config(app, **kwargs)
    # The supervisor makes its workers by this module-level name. The parent holds no
    # listening socket: one that never accepts would still get its share of connections.
    multiprocess.Process = SocketPerWorkerProcess  # type: ignore[misc]
    supervisor = multiprocess.Multiprocess(config, sockets=[])
    with contextlib.suppress(KeyboardInterrupt):
        supervisor.run()
    if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
        # The supervisor stopped because a worker could not start: the container fails.
        sys.exit(STARTUP_FAILURE)


def main() -> None:
    from litellm.proxy.proxy_cli import run_server

    uvicorn.run = run
    run_server(prog_name="litellm")


if __name__ == "__main__":
    main()
