"""The proxy container's command: LiteLLM's own CLI, with workers that share the connections.

`litellm --num_workers N` runs uvicorn's supervisor, whose workers all accept from the one
socket it listens on. The first worker the kernel wakes accepts every connection waiting
(uvloop accepts until the queue is empty), so a few keep-alive clients that connect together
end up mostly on one worker, and stay there, while the others idle. A listening socket per
worker (SO_REUSEPORT) only makes that a matter of chance: the kernel places each connection
by a hash of its addresses, and ten connections split 5/5 a quarter of the time.

Here the supervisor accepts, and hands each connection (its file descriptor, over a Unix
socket pair) to the worker with the fewest open connections. Each worker reports, as its
connections open and close, how many it holds; what it was sent but has not yet taken
counts as its as well, so connections that arrive together alternate. A worker gets
connections only once its app has started; until one has, the supervisor does not even
listen. A worker that is leaving (retired after --max_requests_before_restart, or stopped)
hands back what it was sent but has not served, and the supervisor passes it on. The
worker serves each connection with uvicorn's own HTTP protocol, as its server would.

Nothing else changes: this runs LiteLLM's CLI with the same arguments (it reads the config,
sets up the Prometheus multi-process directory that merges the workers' /metrics, and so
on) and only replaces the uvicorn.run it ends with. The supervisor starts a new worker when
one exits (at once when it retired, after a pause when it crashed), stops every worker and
exits when one cannot start, and on SIGTERM or SIGINT stops listening and stops every
worker, each finishing its requests. A worker whose supervisor is gone stops too. The
supervisor pings no worker; one that leaves a connection it was sent untaken for 30 s has an
event loop that no longer runs, and is killed and replaced. With one worker it is
uvicorn.run itself.

Run as `python3 -m llmroute_proxy_workers <the litellm CLI's arguments>`, with this file's
directory on PYTHONPATH (the worker processes import it again by that name). Standard
library, uvicorn and litellm only.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import multiprocessing
import os
import selectors
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterator
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
# As asyncio's own accept loop: out of file descriptors, try again after a second.
ACCEPT_RETRY_SECONDS = 1.0
# A ready worker that leaves a connection in its pair this long has an event loop that no
# longer runs (a call that blocks it): it is killed, and replaced.
UNTAKEN_TIMEOUT_SECONDS = 30.0
REPORT_RETRY_SECONDS = 0.1

# What supervisor and worker say over their socket pair (SOCK_SEQPACKET: one message each).
CONNECTION = b"c"  # supervisor -> worker, with the connection's file descriptor
READY = b"r"  # worker -> supervisor: its app has started
LEAVING = b"l"  # worker -> supervisor: it takes no more connections
RETURNED = b"b"  # worker -> supervisor, with a connection it was sent but will not serve
# worker -> supervisor: connections taken from the pair so far, connections open now
REPORT = struct.Struct("!cQQ")
REPORT_KIND = b"n"


class _WatchedSet(set):  # type: ignore[type-arg]
    """uvicorn's set of open connections, calling back when a protocol joins or leaves it."""

    def __init__(self, changed: Callable[[], None]) -> None:
        super().__init__()
        self._changed = changed

    def add(self, item: Any) -> None:
        super().add(item)
        self._changed()

    def discard(self, item: Any) -> None:
        super().discard(item)
        self._changed()

    def remove(self, item: Any) -> None:
        super().remove(item)
        self._changed()


class HandedServer(uvicorn.Server):
    """uvicorn's server, serving the connections its supervisor accepted and handed over.

    It listens on nothing itself (uvicorn's startup with an empty list of sockets); each
    connection it is handed gets the protocol uvicorn's own listener would give it, sharing
    the server's state, so uvicorn's limits and graceful shutdown see every connection."""

    def __init__(self, config: uvicorn.Config, channel: socket.socket) -> None:
        super().__init__(config)
        self.channel = channel
        self.taken = 0
        self._taking = False
        self._report_due = False
        self._handovers: set[asyncio.Future[Any]] = set()
        self.server_state.connections = _WatchedSet(self._connections_changed)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])
        if not self.started:
            return
        self.channel.setblocking(False)
        asyncio.get_running_loop().add_reader(self.channel.fileno(), self._take_connections)
        self._taking = True
        self._send(READY)

    async def on_tick(self, counter: int) -> bool:
        leaving = await super().on_tick(counter)
        if leaving:
            # Retired (or stopped): not one more connection, from the tick that decided it.
            self._stop_taking()
        return leaving

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._stop_taking()
        await super().shutdown(sockets=sockets)

    def _protocol(self) -> asyncio.Protocol:
        # What uvicorn's startup passes its listener as the protocol factory.
        return self.config.http_protocol_class(  # type: ignore[call-arg]
            config=self.config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
        )

    def _take_connections(self) -> None:
        if self.should_exit:
            # Retired or stopped, not yet shut down: what waits in the pair goes back.
            self._stop_taking()
            return
        loop = asyncio.get_running_loop()
        for connection in self._received():
            handover = asyncio.ensure_future(
                loop.connect_accepted_socket(self._protocol, connection, ssl=self.config.ssl)
            )
            self._handovers.add(handover)
            handover.add_done_callback(self._handed_over)
        # The supervisor learns they were taken even if one never opens (a TLS handshake
        # that fails): it takes a connection left untaken for a worker that hangs. (One
        # counts as open once its protocol starts, a turn of the loop later.)
        self._connections_changed()

    def _handed_over(self, handover: asyncio.Future[Any]) -> None:
        self._handovers.discard(handover)
        if not handover.cancelled() and handover.exception() is not None:
            logger.warning("A connection could not be served: %s", handover.exception())

    def _received(self) -> Iterator[socket.socket]:
        """The connections waiting in the pair."""
        while True:
            try:
                message, fds, _flags, _address = socket.recv_fds(self.channel, 1, 1)
            except BlockingIOError:
                return
            except OSError:
                message, fds = b"", []
            if not message:
                # The supervisor is gone (nobody would stop this worker), or this worker
                # shut its side of the pair as it leaves: nothing more comes.
                self.should_exit = True
                self._stop_reading()
                return
            self.taken += 1  # one connection a message, even if its descriptor was lost
            if not fds:
                logger.warning("A connection came without its descriptor (too many open?)")
                continue
            # Not inherited by whatever the app starts (recv_fds leaves it inheritable).
            os.set_inheritable(fds[0], False)
            yield socket.socket(fileno=fds[0])

    def _stop_taking(self) -> None:
        """No more connections: the supervisor is told, and what it sent meanwhile goes back.

        Shutting the pair for reading first makes the supervisor's next send fail (it then
        sends to another worker), so no connection can arrive after the last look."""
        if self._stop_reading():
            with contextlib.suppress(OSError):
                self.channel.shutdown(socket.SHUT_RD)
            self._send(LEAVING)
            for connection in self._received():
                self._hand_back(connection)

    def _stop_reading(self) -> bool:
        if not self._taking:
            return False
        self._taking = False
        asyncio.get_running_loop().remove_reader(self.channel.fileno())
        return True

    def _hand_back(self, connection: socket.socket) -> None:
        # If the supervisor is gone, the connection closes.
        with connection, contextlib.suppress(OSError):
            socket.send_fds(self.channel, [RETURNED], [connection.fileno()])
        self._connections_changed()

    def _connections_changed(self) -> None:
        # One report per turn of the event loop, however many connections came and went.
        if not self._report_due:
            self._report_due = True
            asyncio.get_running_loop().call_soon(self._report)

    def _report(self) -> None:
        self._report_due = False
        report = REPORT.pack(REPORT_KIND, self.taken, len(self.server_state.connections))
        try:
            self.channel.send(report)
        except BlockingIOError:
            # The supervisor is behind. It must get the latest count: an old one would show
            # connections not taken, which it takes for a worker that hangs.
            self._report_due = True
            asyncio.get_running_loop().call_later(REPORT_RETRY_SECONDS, self._report)
        except OSError:
            pass  # the supervisor is gone: the worker stops

    def _send(self, message: bytes) -> None:
        with contextlib.suppress(OSError):  # the supervisor is gone: the worker stops
            self.channel.send(message)


def serve(config: uvicorn.Config, channel: socket.socket) -> None:
    """A worker: uvicorn's server, on the connections handed to it over `channel`."""
    config.configure_logging()
    channel.set_inheritable(False)
    server = HandedServer(config, channel)
    server.run()
    if not server.started:
        # The app's startup failed: as uvicorn.run, so the supervisor stops.
        sys.exit(STARTUP_FAILURE)


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, not yet listening (the supervisor listens once a
    worker has started, so no connection waits on workers still importing litellm)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class Worker:
    """A worker process as the supervisor sees it."""

    def __init__(self, process: BaseProcess, channel: socket.socket) -> None:
        self.process = process
        self.channel = channel
        self.started_at = time.monotonic()
        self.ready = False
        self.reading = True  # its end of the pair is open
        self.sent = 0
        self.taken = 0
        self.open = 0
        self.last_sent = 0
        # When each connection it was sent but has not taken yet was sent, oldest first.
        self.untaken_since: collections.deque[float] = collections.deque()

    def sent_one(self, ordinal: int) -> None:
        self.sent += 1
        self.last_sent = ordinal
        self.untaken_since.append(time.monotonic())

    def reported(self, taken: int, open_now: int) -> None:
        self.taken, self.open = taken, open_now
        while len(self.untaken_since) > self.sent - self.taken:
            self.untaken_since.popleft()

    @property
    def load(self) -> int:
        """Connections it holds, and those sent that it has not yet taken."""
        return self.open + len(self.untaken_since)


class Supervisor:
    """Accepts for `workers` worker processes and keeps them serving, until a stop signal or
    a worker that cannot start."""

    def __init__(self, config: uvicorn.Config, workers: int) -> None:
        self.config = config
        self.workers = workers
        self.running: list[Worker] = []
        self.exit_code = 0
        self._selector = selectors.DefaultSelector()
        self._listener: socket.socket | None = None
        self._listening = False
        self._accepting = False
        self._accept_paused_until = 0.0
        self._connections_sent = 0
        # Connections handed back while no worker was ready.
        self._waiting: list[socket.socket] = []
        self._timers: list[tuple[float, Callable[[], None]]] = []
        # Signal handlers only write here; the loop wakes on it.
        self._wake_read, self._wake_write = os.pipe()
        self._stopping = False

    def run(self) -> int:
        for signum in _STOP_SIGNALS:
            signal.signal(signum, self._on_stop_signal)
        try:
            self._listener = listening_socket(self.config.host, self.config.port)
        except OSError as error:
            logger.error("Cannot bind %s:%d: %s", self.config.host, self.config.port, error)
            return STARTUP_FAILURE
        logger.info("Started supervisor process [%d]", os.getpid())
        self._selector.register(self._wake_read, selectors.EVENT_READ, self._woken)
        try:
            for _ in range(self.workers):
                self._start_worker()
            while not self._stopping:
                self._step()
        finally:
            # Also when starting a worker failed (say, the pod's process limit): the
            # workers still running must not outlive the supervisor.
            self._listener.close()
            for connection in self._waiting:
                connection.close()
            self._stop_all()
            self._selector.close()
        return self.exit_code

    def _on_stop_signal(self, signum: int, _frame: Any) -> None:
        self._stopping = True
        os.write(self._wake_write, b"\0")

    def _woken(self) -> None:
        os.read(self._wake_read, 512)

    def _step(self) -> None:
        deadlines = [at for at, _ in self._timers]
        deadlines += [
            w.untaken_since[0] + UNTAKEN_TIMEOUT_SECONDS
            for w in self.running
            if w.ready and w.untaken_since
        ]
        timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        registered = self._selector.get_map()
        for key, _events in self._selector.select(timeout):
            if self._stopping:
                return
            # Not one an earlier handler of this batch unregistered (a worker's pair, closed
            # when its exit was handled first).
            if registered.get(key.fd) is key:
                key.data()
        now = time.monotonic()
        due = [action for at, action in self._timers if at <= now]
        self._timers = [(at, action) for at, action in self._timers if at > now]
        for action in due:
            if self._stopping:
                return
            action()
        self._kill_stuck()

    def _kill_stuck(self) -> None:
        """Kills a ready worker that has left a connection in its pair too long.

        Its event loop no longer runs: it would hold that connection, and each one sent its
        way whenever it holds the fewest, forever; the liveness probe's connections go to
        the others. Its exit is handled as a crash: it is replaced after a pause."""
        now = time.monotonic()
        for worker in self.running:
            if not (worker.ready and worker.untaken_since):
                continue
            if now - worker.untaken_since[0] < UNTAKEN_TIMEOUT_SECONDS:
                continue
            logger.error(
                "Worker process [%d] took no connection for %d s: killed",
                worker.process.pid,
                UNTAKEN_TIMEOUT_SECONDS,
            )
            self._set_ready(worker, False)
            if worker.process.pid is not None:
                os.kill(worker.process.pid, signal.SIGKILL)

    def _start_worker(self) -> None:
        own, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            process = _spawn.Process(
                target=serve, args=(self.config, theirs), name="llmroute-worker"
            )
            process.start()
        except BaseException:
            own.close()
            raise
        finally:
            theirs.close()
        own.setblocking(False)
        worker = Worker(process, own)
        self.running.append(worker)
        self._selector.register(own, selectors.EVENT_READ, functools.partial(self._read, worker))
        self._selector.register(
            process.sentinel, selectors.EVENT_READ, functools.partial(self._exited, worker)
        )
        logger.info("Started worker process [%d]", process.pid)

    def _read(self, worker: Worker) -> None:
        """What the worker says: ready, its count of connections, a connection it returns."""
        while True:
            try:
                message, fds, _flags, _address = socket.recv_fds(worker.channel, REPORT.size, 1)
            except BlockingIOError:
                return
            except OSError:
                message, fds = b"", []
            if not message:
                # It is leaving; its exit (the process sentinel) follows.
                self._selector.unregister(worker.channel)
                worker.reading = False
                self._set_ready(worker, False)
                return
            kind = message[:1]
            if kind == READY:
                logger.info("Worker process [%d] ready", worker.process.pid)
                self._set_ready(worker, True)
            elif kind == REPORT_KIND and len(message) == REPORT.size:
                _kind, taken, open_now = REPORT.unpack(message)
                worker.reported(taken, open_now)
            elif kind in (LEAVING, RETURNED):
                self._set_ready(worker, False)
            for fd in fds:
                with socket.socket(fileno=fd) as connection:
                    self._dispatch(connection)

    def _set_ready(self, worker: Worker, ready: bool) -> None:
        worker.ready = ready
        self._update_accepting()

    def _update_accepting(self) -> None:
        """Accepts while a worker is ready; with none, connections wait in the listen queue."""
        listener = self._listener
        assert listener is not None
        any_ready = any(w.ready for w in self.running)
        if any_ready and not self._listening:
            listener.listen(self.config.backlog)
            self._listening = True
        paused = time.monotonic() < self._accept_paused_until
        if any_ready and not self._accepting and not paused:
            self._selector.register(listener, selectors.EVENT_READ, self._accept)
            self._accepting = True
        elif not any_ready and self._accepting:
            self._selector.unregister(listener)
            self._accepting = False
        if any_ready:
            waiting, self._waiting = self._waiting, []
            for connection in waiting:
                with connection:
                    self._dispatch(connection)

    def _accept(self) -> None:
        listener = self._listener
        assert listener is not None
        # The latest counts first, so connections that arrive together are spread.
        for worker in self.running:
            if worker.ready:
                self._read(worker)
        while self._accepting:
            try:
                connection, _address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as error:
                # Out of file descriptors, say: stop accepting for a moment, as asyncio does.
                logger.error("Cannot accept: %s", error)
                self._selector.unregister(listener)
                self._accepting = False
                self._accept_paused_until = time.monotonic() + ACCEPT_RETRY_SECONDS
                self._timers.append((self._accept_paused_until, self._update_accepting))
                return
            with connection:
                self._dispatch(connection)

    def _dispatch(self, connection: socket.socket) -> None:
        """Sends the connection to the ready worker with the fewest; the caller closes its copy."""
        ready = sorted((w for w in self.running if w.ready), key=lambda w: (w.load, w.last_sent))
        leaving = []
        for worker in ready:
            try:
                socket.send_fds(worker.channel, [CONNECTION], [connection.fileno()])
            except BrokenPipeError:
                leaving.append(worker)  # it shut its pair for reading; its LEAVING follows
                continue
            except OSError:
                continue  # its pair is full: it takes nothing, the next one
            self._connections_sent += 1
            worker.sent_one(self._connections_sent)
            break
        else:
            if ready and not leaving:
                logger.warning("No worker could take a connection; it is closed")
            else:
                self._keep_waiting(connection)
        for worker in leaving:
            self._set_ready(worker, False)

    def _keep_waiting(self, connection: socket.socket) -> None:
        """Keeps a connection until a worker is ready (one handed back when none is)."""
        try:
            self._waiting.append(connection.dup())
        except OSError as error:
            logger.warning("A connection waiting for a worker is closed: %s", error)

    def _exited(self, worker: Worker) -> None:
        process = worker.process
        # Reaped, it has closed its end of the pair too (the sentinel may fire first): what
        # it returned on its way out is all there, then the pair's end.
        process.join()
        if worker.reading:
            self._read(worker)
        if worker.reading:  # not at its end after all: the descriptor must not stay listed
            self._selector.unregister(worker.channel)
            worker.reading = False
        self._selector.unregister(process.sentinel)
        worker.channel.close()
        self.running.remove(worker)
        self._set_ready(worker, False)
        lived = time.monotonic() - worker.started_at
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
            self._timers.append((time.monotonic() + RESTART_PAUSE_SECONDS, self._start_worker))
        else:
            self._start_worker()

    def _stop_all(self) -> None:
        for worker in self.running:
            process = worker.process
            if process.exitcode is None and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        for worker in self.running:
            # Each finishes its requests (uvicorn's graceful shutdown); the pod's
            # terminationGracePeriodSeconds bounds the wait.
            worker.process.join()
            worker.channel.close()
        logger.info("Stopping supervisor process [%d]", os.getpid())


def run(app: Any, **kwargs: Any) -> None:
    """uvicorn.run; with several workers, the launcher's supervisor and workers."""
    workers = kwargs.pop("workers", None) or 1
    if workers <= 1 or kwargs.get("reload") or kwargs.get("fd") is not None or kwargs.get("uds"):
        _uvicorn_run(app, workers=workers, **kwargs)
        return
    exit_code = Supervisor(uvicorn.Config(app, **kwargs), workers).run()
    if exit_code:
        sys.exit(exit_code)


def main() -> None:
    from litellm.proxy.proxy_cli import run_server

    uvicorn.run = run
    run_server(prog_name="litellm")


if __name__ == "__main__":
    main()
