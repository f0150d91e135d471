"""The fake OpenAI upstream of the gateway benchmark, in a process of its own.

    python -m benchmarks.upstream --port 18001 --delay 0.05

It is localcluster.fakes.FakeOpenAI with Nagle's algorithm turned off on its connections.
The fake writes a response's headers and body in two sends; with Nagle on, the second waits
for the client's delayed ACK of the first, which adds 40 ms to every answer on Linux and
would make a 50 ms upstream look like a 90 ms one, to every client alike.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading

from benchmarks import REPO_ROOT  # noqa: F401  (puts hack/ on the path)
from localcluster import fakes


def _no_delay(setup):
    def wrapped(handler) -> None:
        setup(handler)
        handler.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    return wrapped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.upstream", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.05, help="seconds before each answer")
    parser.add_argument(
        "--nagle", action="store_true", help="leave Nagle's algorithm on (the fake's default)"
    )
    args = parser.parse_args(argv)
    if not args.nagle:
        fakes._Handler.setup = _no_delay(fakes._Handler.setup)  # type: ignore[method-assign]
    fake = fakes.FakeOpenAI(delay=args.delay)
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    fake.start(args.host, args.port)
    try:
        while not done.wait(1):
            # The fake records every request; a long benchmark needs none of them.
            fake.reset()
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
