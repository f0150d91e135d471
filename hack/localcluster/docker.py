"""A Docker engine for the image tests: the one that answers already, or a dockerd started here.

hack/build-image.sh starts and stops a dockerd of its own when none answers; a test that also
runs the image needs the engine for longer than the build, so it holds one with DockerEngine
and the script then finds it answering and leaves it alone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .processes import die_with_parent, tail


class DockerUnavailable(RuntimeError):
    """No Docker engine can run on this machine; the message says why."""


def answers(timeout: float = 20) -> bool:
    """Whether a Docker engine answers the docker client."""
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(
            ["docker", "info"], capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


def install_docker() -> None:
    """Debian's docker.io (dockerd, containerd, runc and a docker client), with apt-get."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "docker.io"]):
        result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed:\n{result.stdout}{result.stderr}")


@dataclass
class DockerEngine:
    """Use as a context manager, or call start() and stop().

    start() raises DockerUnavailable when no engine answers and none can be started here: not
    root, dockerd not installed (and `install` off, or no apt-get), or dockerd exiting at start
    (a sandbox that forbids what it needs). A dockerd that runs but does not answer in time is
    an error, not a verdict on the machine.
    """

    log_path: Path
    install: bool = False  # apt-get install docker.io when dockerd is missing
    start_timeout: float = 60
    _dockerd: subprocess.Popen | None = field(default=None, init=False)

    def __enter__(self) -> DockerEngine:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def started_here(self) -> bool:
        return self._dockerd is not None

    def start(self) -> None:
        if answers():
            return
        if os.geteuid() != 0:
            raise DockerUnavailable("no Docker engine answers, and starting dockerd needs root")
        if shutil.which("dockerd") is None or shutil.which("docker") is None:
            if not self.install:
                raise DockerUnavailable("dockerd is not installed (apt-get install docker.io)")
            if shutil.which("apt-get") is None:
                raise DockerUnavailable("dockerd is not installed and there is no apt-get")
            install_docker()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._dockerd = subprocess.Popen(
                ["dockerd"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                # A dockerd of this process's must not outlive it, even killed.
                preexec_fn=die_with_parent,
            )
        deadline = time.monotonic() + self.start_timeout
        while not answers(timeout=5):
            if self._dockerd.poll() is not None:
                code = self._dockerd.returncode
                self._dockerd = None
                raise DockerUnavailable(
                    f"dockerd exited with {code} at start:\n{tail(self.log_path, 15)}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"dockerd did not answer within {self.start_timeout}s:\n{tail(self.log_path)}"
                )
            time.sleep(0.5)

    def stop(self, grace: float = 30) -> None:
        """Stop the dockerd started here (it stops its containerd first); else nothing."""
        if self._dockerd is None:
            return
        if self._dockerd.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._dockerd.send_signal(signal.SIGTERM)
            try:
                self._dockerd.wait(grace)
            except subprocess.TimeoutExpired:
                self._dockerd.kill()
                self._dockerd.wait()
        self._dockerd = None
