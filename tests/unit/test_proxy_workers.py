"""The proxy's launcher (payloads/proxy_workers.py): workers that share the connections.

The launcher runs as shipped (the payload's text, under the name the pod imports it by),
serving a tiny ASGI app that answers with its process id instead of LiteLLM's, so each
test takes seconds; with LiteLLM itself it runs in the e2e tests (the process runner starts
every proxy pod through it).
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import importlib.util
import inspect
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import uvicorn
import yaml

from llmroute.payloads import PROXY_WORKERS, payload_text
from llmroute.render.proxy import CONFIG_DIR, WORKERS_MODULE
from manifests import render_manifest

T = TypeVar("T")
GOLDEN = Path(__file__).parent / "golden"
DEADLINE_SECONDS = 60.0

APP = """
import asyncio
import os
import time
from pathlib import Path


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup" and os.environ.get("FAIL_STARTUP"):
                await send({"type": "lifespan.startup.failed", "message": "no config"})
                return
            if message["type"] == "lifespan.startup" and os.environ.get("HOLD_STARTUP"):
                # Tells the test this worker is starting, then finishes once the test lets it.
                Path(os.environ["STARTED_FILE"] + f".{os.getpid()}").write_text("")
                while not Path(os.environ["RELEASE_FILE"]).exists():
                    await asyncio.sleep(0.05)
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/hang":
        time.sleep(3600)  # blocks the worker's event loop
    if scope["path"] == "/block":
        # Blocks the worker's event loop until the test lets it go on.
        Path(os.environ["STARTED_FILE"]).write_text(str(os.getpid()))
        while not Path(os.environ["RELEASE_FILE"]).exists():
            time.sleep(0.05)
    if scope["path"] == "/slow":
        # Tells the test the request is in flight, then answers once the test lets it.
        Path(os.environ["STARTED_FILE"]).write_text(str(os.getpid()))
        while not Path(os.environ["RELEASE_FILE"]).exists():
            await asyncio.sleep(0.05)
    body = str(os.getpid()).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
"""


def wait_for(what: str, probe: Callable[[], T | None]) -> T:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        value = probe()
        if value is not None:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listen_queues(port: int) -> list[int]:
    """For each socket listening on the port, how many connections wait in its queue."""
    queues = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            queues.append(int(fields[4].split(":")[1], 16))
    return queues


def answer(port: int, path: str = "/") -> int | None:
    """The pid of the worker that answers a request on a new connection, or None."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
            return int(response.read())
    except OSError:
        return None


def closed_by_peer(client: socket.socket) -> bool:
    try:
        return client.recv(4096) == b""
    except ConnectionResetError:  # the request it had sent was never read
        return True


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class Launcher:
    def __init__(
        self,
        tmp: Path,
        port: int,
        workers: int,
        options: str = "",
        extra_env: dict[str, str] | None = None,
        untaken_timeout: float | None = None,
    ) -> None:
        (tmp / f"{WORKERS_MODULE}.py").write_text(payload_text(PROXY_WORKERS))
        (tmp / "pidapp.py").write_text(textwrap.dedent(APP))
        self.started = tmp / "started"
        self.log = tmp / f"launcher-{port}.log"
        self.release = tmp / "release"
        self.port = port
        run = (
            f"import {WORKERS_MODULE} as w; "
            + (f"w.UNTAKEN_TIMEOUT_SECONDS = {untaken_timeout}; " if untaken_timeout else "")
            + f"w.run('pidapp:app', host='127.0.0.1', port={port}, workers={workers}, "
            f"lifespan='on', {options or 'timeout_keep_alive=5'})"
        )
        env = {
            **os.environ,
            "PYTHONPATH": str(tmp),
            "STARTED_FILE": str(self.started),
            "RELEASE_FILE": str(self.release),
            **(extra_env or {}),
        }
        # A session of its own: stop() can end every worker even if the supervisor is gone.
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", run],
                env=env,
                cwd=tmp,
                start_new_session=True,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def ready_workers(self) -> int:
        """How many workers the supervisor has seen ready so far (its log says each)."""
        return len(re.findall(r"Worker process \[\d+\] ready", self.log.read_text()))

    def worker_processes(self) -> set[int]:
        """The supervisor's worker processes (not multiprocessing's resource tracker)."""
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return {
            int(child)
            for child in children
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
        }

    def worker_pids(self, count: int) -> set[int]:
        """Asks over new connections until `count` different workers have answered."""
        seen: set[int] = set()

        def probe() -> set[int] | None:
            pid = answer(self.port)
            if pid is not None:
                seen.add(pid)
            return set(seen) if len(seen) >= count else None

        return wait_for(f"{count} workers to answer", probe)

    def stop(self) -> None:
        self.release.write_text("")  # a worker held in its start-up or a request goes on
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(DEADLINE_SECONDS)
        # Whatever is left of the session (a test that failed midway) goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[[int], Launcher]]:
    started: list[Launcher] = []

    def start(
        workers: int,
        port: int | None = None,
        options: str = "",
        extra_env: dict[str, str] | None = None,
        untaken_timeout: float | None = None,
    ) -> Launcher:
        launcher = Launcher(
            tmp_path, port or free_port(), workers, options, extra_env, untaken_timeout
        )
        started.append(launcher)
        return launcher

    yield start
    for launcher in started:
        launcher.stop()


def test_keep_alive_connections_are_spread_evenly(launch) -> None:
    launcher = launch(2)
    wait_for("both workers ready", lambda: launcher.ready_workers() == 2 or None)
    # Ten clients that connect together and keep their connections: with one socket shared
    # by the workers (uvicorn's supervisor) or a socket each (a hash of the addresses
    # decides), how they split is a matter of chance. Here it is 5/5, every time.
    clients = [
        http.client.HTTPConnection("127.0.0.1", launcher.port, timeout=30) for _ in range(10)
    ]
    try:
        pids = []
        for client in clients:
            client.request("GET", "/")
            pids.append(int(client.getresponse().read()))
        # Each connection stays with its worker.
        for client, pid in zip(clients, pids, strict=True):
            client.request("GET", "/")
            assert int(client.getresponse().read()) == pid
    finally:
        for client in clients:
            client.close()
    assert sorted(collections.Counter(pids).values()) == [5, 5]
    assert launcher.process.pid not in pids
    assert set(pids) == launcher.worker_processes()
    assert len(listen_queues(launcher.port)) == 1  # the supervisor's


def test_a_dead_worker_is_replaced(launch) -> None:
    launcher = launch(2)
    first = launcher.worker_pids(2)
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    wait_for("the worker to be gone", lambda: not alive(victim) or None)

    def replaced() -> set[int] | None:
        pid = answer(launcher.port)
        return {pid} if pid is not None and pid not in first else None

    wait_for("a new worker to answer", replaced)
    assert len(launcher.worker_processes()) == 2
    assert launcher.process.poll() is None


def test_a_worker_retired_after_its_requests_is_replaced(launch) -> None:
    launcher = launch(2, options="limit_max_requests=3")
    seen: set[int] = set()

    def recycled() -> bool | None:
        pid = answer(launcher.port)
        if pid is not None:
            seen.add(pid)
        # More workers than run at once have answered: some retired and were replaced.
        return True if len(seen) > 2 else None

    wait_for("retired workers to be replaced", recycled)
    # With no more requests, both places are filled again (each after a pause, since
    # these workers retire within seconds of their start).
    assert wait_for("two workers", lambda: len(launcher.worker_processes()) == 2 or None)
    assert launcher.process.poll() is None


def test_a_worker_whose_event_loop_hangs_is_replaced(launch) -> None:
    launcher = launch(2, untaken_timeout=2)
    wait_for("both workers ready", lambda: launcher.ready_workers() == 2 or None)
    workers = launcher.worker_processes()
    hung = socket.create_connection(("127.0.0.1", launcher.port), timeout=30)
    hung.sendall(b"GET /hang HTTP/1.1\r\nHost: test\r\n\r\n")  # blocks its worker's loop
    healthy = http.client.HTTPConnection("127.0.0.1", launcher.port, timeout=30)
    try:
        healthy.request("GET", "/")
        (stuck,) = workers - {int(healthy.getresponse().read())}
        # Each worker holds one connection: the next goes to the one whose loop is stuck,
        # and waits in its pair, never taken.
        waiting = socket.create_connection(("127.0.0.1", launcher.port), timeout=30)
        waiting.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        wait_for("the stuck worker to be killed", lambda: not alive(stuck) or None)
        assert "took no connection for 2 s: killed" in launcher.log.read_text()
        assert closed_by_peer(waiting)  # with its worker, rather than left waiting
        waiting.close()
        wait_for("a worker in its place", lambda: len(launcher.worker_processes()) == 2 or None)
        assert wait_for("three ready", lambda: launcher.ready_workers() == 3 or None)
        assert stuck not in launcher.worker_pids(2)
    finally:
        hung.close()
        healthy.close()
    assert launcher.process.poll() is None


def test_a_leaving_worker_hands_back_the_connections_it_has_not_taken(launch) -> None:
    launcher = launch(2)
    wait_for("both workers ready", lambda: launcher.ready_workers() == 2 or None)
    blocked = socket.create_connection(("127.0.0.1", launcher.port), timeout=30)
    blocked.sendall(b"GET /block HTTP/1.1\r\nHost: test\r\n\r\n")
    started = launcher.started
    leaving = int(
        wait_for("the block to start", lambda: (started.exists() and started.read_text()) or None)
    )
    other = http.client.HTTPConnection("127.0.0.1", launcher.port, timeout=30)
    try:
        other.request("GET", "/")
        staying = int(other.getresponse().read())
        # Each holds one connection: the next is sent to the blocked worker, which is told to
        # stop before its event loop runs again and takes it from the pair.
        handed = http.client.HTTPConnection("127.0.0.1", launcher.port, timeout=30)
        handed.connect()
        wait_for("the supervisor to accept it", lambda: listen_queues(launcher.port) == [0] or None)
        os.kill(leaving, signal.SIGTERM)
        launcher.release.write_text("")
        handed.request("GET", "/")
        assert int(handed.getresponse().read()) == staying
        handed.close()
    finally:
        blocked.close()
        other.close()
    wait_for("the worker to leave", lambda: not alive(leaving) or None)


def test_workers_stop_when_their_supervisor_is_gone(launch) -> None:
    launcher = launch(2)
    pids = launcher.worker_pids(2)
    launcher.process.kill()
    launcher.process.wait()
    # Nothing hands them connections any more: they must not linger.
    assert wait_for("the workers to exit", lambda: not any(alive(p) for p in pids) or None)


def test_sigterm_stops_every_worker_after_its_requests(launch) -> None:
    launcher = launch(2)
    pids = launcher.worker_pids(2)
    with socket.create_connection(("127.0.0.1", launcher.port), timeout=30) as client:
        client.sendall(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
        wait_for("the request to start", lambda: launcher.started.exists() or None)
        launcher.process.send_signal(signal.SIGTERM)
        # The worker keeps serving the request it holds; the test lets it finish.
        launcher.release.write_text("")
        response = b""
        while b"\r\n\r\n" not in response or not response.rstrip().endswith(
            launcher.started.read_text().encode()
        ):
            chunk = client.recv(4096)
            if not chunk:
                break
            response += chunk
    assert response.startswith(b"HTTP/1.1 200")
    assert launcher.process.wait(DEADLINE_SECONDS) == 0
    assert wait_for("the workers to exit", lambda: not any(alive(p) for p in pids) or None)


def test_a_worker_takes_no_connection_before_its_app_has_started(launch, tmp_path) -> None:
    launcher = launch(2, extra_env={"HOLD_STARTUP": "1"})
    wait_for("both workers starting", lambda: len(list(tmp_path.glob("started.*"))) == 2 or None)
    # The kernel would queue connections on a listening socket while no worker can answer
    # yet (and reset them if the start fails): nothing listens before an app is up.
    assert len(listen_queues(launcher.port)) == 0
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", launcher.port), timeout=5).close()
    launcher.release.write_text("")
    assert len(launcher.worker_pids(2)) == 2
    assert len(listen_queues(launcher.port)) == 1


def test_a_port_taken_stops_the_launcher(launch) -> None:
    port = free_port()
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", port))
        holder.listen()
        launcher = launch(2, port)
        assert launcher.process.wait(DEADLINE_SECONDS) == 3  # uvicorn's STARTUP_FAILURE
        assert len(listen_queues(port)) == 1


def test_a_worker_whose_app_cannot_start_stops_the_launcher(launch) -> None:
    launcher = launch(2, extra_env={"FAIL_STARTUP": "1"})
    assert launcher.process.wait(DEADLINE_SECONDS) == 3  # uvicorn's STARTUP_FAILURE
    assert len(listen_queues(launcher.port)) == 0


def test_the_proxy_container_runs_the_shipped_launcher() -> None:
    route = yaml.safe_load((GOLDEN / "replicas-redis" / "route.yaml").read_text())
    rendered = render_manifest(route)
    config_map = rendered.objects[0]  # the proxy's files come first
    (deployment,) = [o for o in rendered.objects if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python3", "-m", WORKERS_MODULE]
    assert config_map["data"][f"{WORKERS_MODULE}.py"] == payload_text(PROXY_WORKERS)
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert CONFIG_DIR in env["PYTHONPATH"].split(":")
    # Not the working directory: modules come from the image's packages and the ConfigMap.
    assert env["PYTHONSAFEPATH"] == "1"
    assert "--num_workers" in container["args"]


def test_the_pinned_cli_and_uvicorn_have_what_the_launcher_uses() -> None:
    # The launcher swaps the uvicorn.run that LiteLLM's CLI calls at its end; each worker is
    # a uvicorn.Server with no listener of its own (startup and shutdown with `sockets`,
    # on_tick),
    # giving each connection it is handed the HTTP protocol uvicorn's listener would, built
    # the way uvicorn's startup builds it, and watching the set of open connections that
    # every protocol joins and leaves. A release that changes any of it needs a new look.
    # Found without importing litellm (whose import would fetch its price map).
    package = importlib.util.find_spec("litellm")
    assert package is not None and package.origin is not None
    source = (Path(package.origin).parent / "proxy" / "proxy_cli.py").read_text()
    assert "import uvicorn\n" in source and "uvicorn.run(" in source
    for method in (uvicorn.Server.run, uvicorn.Server.startup, uvicorn.Server.shutdown):
        assert "sockets" in inspect.signature(method).parameters
    # The tick that decides a worker retires (its requests) is where it stops taking any.
    assert inspect.iscoroutinefunction(uvicorn.Server.on_tick)
    assert "self.on_tick(" in inspect.getsource(uvicorn.Server.main_loop)
    startup = inspect.getsource(uvicorn.Server.startup)
    assert "config.http_protocol_class(" in startup
    assert "server_state=self.server_state" in startup
    assert "app_state=self.lifespan.state" in startup
    assert callable(uvicorn.Config.configure_logging)
    config = uvicorn.Config("pidapp:app", host="127.0.0.1", port=1, backlog=7)
    assert (config.host, config.port, config.backlog) == ("127.0.0.1", 1, 7)
    server = uvicorn.Server(config)
    assert server.started is False
    assert type(server.server_state.connections) is set
