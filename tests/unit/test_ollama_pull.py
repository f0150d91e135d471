"""The managed Ollama's command (payloads/ollama_pull.sh), run as the pod runs it, against a
stand-in `ollama` on PATH that records its calls and holds models in a directory.

The stand-in answers like the real CLI where the script depends on it: `serve` runs until
SIGTERM, `list` fails until the server is up, `show NAME` fails for a model that is not
present, `pull NAME` fails for a name the registry does not know.

The stand-in stays for what the real server cannot be made to do on demand: a pull that
succeeds (no registry is reachable here), a pull still running when SIGTERM arrives, a
server that exits at start or dies later. The script against the real `ollama` (a present
model kept, a missing one failing its pull) runs in test_runner_materialize.py and the
e2e tests/e2e/test_ollama.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from llmroute.render.ollama import pull_script

STUB = r"""
import os, signal, sys, time
from pathlib import Path

state = Path(os.environ["OLLAMA_STUB_DIR"])
args = sys.argv[1:]
with (state / "calls").open("a") as calls:
    calls.write(" ".join(args) + "\n")


def canonical(name):
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else name + ":latest"


def present():
    path = state / "present"
    return set(path.read_text().split()) if path.exists() else set()


command = args[0] if args else ""
if command == "serve":
    mode = os.environ.get("OLLAMA_STUB_SERVE", "ok")
    if mode.startswith("exit:"):
        sys.exit(int(mode[5:]))
    (state / "serve.pid").write_text(str(os.getpid()))

    def stop(*_):
        (state / "up").unlink(missing_ok=True)
        with (state / "calls").open("a") as calls:
            calls.write("serve stopped\n")
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    if mode != "silent":
        (state / "up").touch()
    while True:
        time.sleep(0.1)
if not (state / "up").exists():
    print("Error: could not connect to ollama app, is it running?", file=sys.stderr)
    sys.exit(1)
if command == "list":
    sys.exit(0)
if command == "show":
    sys.exit(0 if canonical(args[1]) in present() else 1)
if command == "pull":
    name = canonical(args[1])
    registry = set(os.environ.get("OLLAMA_STUB_REGISTRY", "").split())
    if name.rsplit(":", 1)[0] not in registry and name not in registry:
        print("Error: pull model manifest: file does not exist", file=sys.stderr)
        sys.exit(1)
    time.sleep(float(os.environ.get("OLLAMA_STUB_PULL_SECONDS", "0")))
    with (state / "present").open("a") as models:
        models.write(name + "\n")
    sys.exit(0)
sys.exit(2)
"""

SHELLS = [s for s in ("dash", "bash") if shutil.which(s)]


@dataclass
class Pod:
    """One run of the script, with the files it and the stand-in leave behind."""

    process: subprocess.Popen
    state: Path
    ready_file: Path
    termination_log: Path

    def calls(self) -> list[str]:
        path = self.state / "calls"
        return path.read_text().splitlines() if path.exists() else []

    def wait(self, what: str, probe, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while not probe():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not reached; calls: {self.calls()}")
            time.sleep(0.05)

    def wait_ready(self) -> None:
        self.wait("ready file", lambda: self.ready_file.exists() or self.process.poll() is not None)
        assert self.process.poll() is None, f"exited {self.process.returncode}: {self.output()}"

    def exit_code(self, timeout: float = 15) -> int:
        return self.process.wait(timeout)

    def output(self) -> str:
        self.process.wait(15)
        assert self.process.stdout is not None
        return self.process.stdout.read()

    def server_alive(self) -> bool:
        pid_file = self.state / "serve.pid"
        if not pid_file.exists():
            return False
        try:
            os.kill(int(pid_file.read_text()), 0)
        except ProcessLookupError:
            return False
        return True


@pytest.fixture(params=SHELLS)
def run(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator:
    """run(models, present=..., registry=..., **stub_env) starts the script like the pod does:
    `sh -c <script> llmroute-ollama`."""
    started: list[Pod] = []
    shell = request.param

    def start(models: str, *, present: str = "", registry: str = "", **env: str) -> Pod:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        stub = bin_dir / "ollama"
        stub.write_text(f"#!{sys.executable}\n{STUB}")
        stub.chmod(0o755)
        state = tmp_path / "state"
        state.mkdir(exist_ok=True)
        if present:
            (state / "present").write_text("\n".join(present.split()) + "\n")
        termination_log = tmp_path / "termination-log"
        termination_log.touch()  # the kubelet creates it; the script only writes to it
        ready_file = tmp_path / "run" / "llmroute" / "ready"
        process = subprocess.Popen(
            [shell, "-c", pull_script(), "llmroute-ollama"],
            env={
                "PATH": f"{bin_dir}:/usr/bin:/bin",
                "OLLAMA_STUB_DIR": str(state),
                "OLLAMA_STUB_REGISTRY": registry,
                "LLMROUTE_OLLAMA_MODELS": models,
                "LLMROUTE_OLLAMA_READY_FILE": str(ready_file),
                "LLMROUTE_TERMINATION_LOG": str(termination_log),
                "LLMROUTE_OLLAMA_START_TIMEOUT": "10",
                **env,
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        pod = Pod(process, state, ready_file, termination_log)
        started.append(pod)
        return pod

    yield start
    for pod in started:
        if pod.process.poll() is None:
            pod.process.kill()
            pod.process.wait()
        pid_file = pod.state / "serve.pid"
        if pod.server_alive():
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_present_models_are_kept_and_missing_ones_pulled(run) -> None:
    pod = run("llama3.2 qwen2.5:7b", present="llama3.2:latest", registry="llama3.2 qwen2.5")
    pod.wait_ready()
    calls = pod.calls()
    assert "pull llama3.2" not in calls, "a model on the volume is not pulled again"
    assert calls.count("pull qwen2.5:7b") == 1
    assert calls.index("show llama3.2") < calls.index("pull qwen2.5:7b")
    assert "qwen2.5:7b" in (pod.state / "present").read_text()
    # Ready, the script keeps serving until the pod stops.
    time.sleep(0.3)
    assert pod.process.poll() is None
    assert pod.server_alive()


def test_sigterm_stops_the_server_and_exits_cleanly(run) -> None:
    pod = run("llama3.2", present="llama3.2:latest")
    pod.wait_ready()
    pod.process.send_signal(signal.SIGTERM)
    assert pod.exit_code() == 0
    assert "serve stopped" in pod.calls()
    assert not pod.server_alive()
    assert not pod.ready_file.exists()


def test_an_unknown_model_fails_loudly_and_never_gets_ready(run) -> None:
    pod = run("llama3.2 no-such-model:1b", registry="llama3.2")
    assert pod.exit_code() != 0
    assert not pod.ready_file.exists()
    assert "pull llama3.2" in pod.calls(), "models before the unknown one are pulled"
    assert "no-such-model:1b" in pod.termination_log.read_text()
    # Ollama's own reason reaches the termination message (and so OllamaReady), and the log.
    assert "pull model manifest: file does not exist" in pod.termination_log.read_text()
    output = pod.output()
    assert "Error: pull model manifest: file does not exist" in output
    assert "no-such-model:1b" in output
    assert "serve stopped" in pod.calls()
    assert not pod.server_alive()


def test_a_marker_left_by_an_earlier_start_is_removed(run) -> None:
    pod = run("llama3.2", OLLAMA_STUB_SERVE="silent", LLMROUTE_OLLAMA_START_TIMEOUT="1")
    pod.ready_file.parent.mkdir(parents=True, exist_ok=True)
    pod.ready_file.touch()
    assert pod.exit_code() != 0
    assert not pod.ready_file.exists()
    assert "did not answer within 1s" in pod.termination_log.read_text()


def test_no_models_is_ready_once_the_server_answers(run) -> None:
    pod = run("")
    pod.wait_ready()
    assert not [c for c in pod.calls() if c.startswith(("pull", "show"))]


def test_a_server_that_exits_at_start_fails_the_container(run) -> None:
    pod = run("llama3.2", OLLAMA_STUB_SERVE="exit:3")
    assert pod.exit_code() == 1
    assert "exited with status 3" in pod.termination_log.read_text()
    assert not pod.ready_file.exists()


def test_a_server_that_dies_later_takes_readiness_with_it(run) -> None:
    pod = run("llama3.2", present="llama3.2:latest")
    pod.wait_ready()
    os.kill(int((pod.state / "serve.pid").read_text()), signal.SIGKILL)
    assert pod.exit_code() == 1
    assert not pod.ready_file.exists()


def test_sigterm_during_a_pull_ends_it_at_once(run) -> None:
    pod = run("llama3.2", registry="llama3.2", OLLAMA_STUB_PULL_SECONDS="60")
    pod.wait("the pull", lambda: "pull llama3.2" in pod.calls())
    started = time.monotonic()
    pod.process.send_signal(signal.SIGTERM)
    assert pod.exit_code(timeout=10) == 0
    assert time.monotonic() - started < 5
    assert not pod.ready_file.exists()
    assert not pod.server_alive()


def test_the_script_is_posix_sh() -> None:
    if not shutil.which("dash"):
        pytest.skip("no dash to check the script with")
    subprocess.run(["dash", "-n", "-c", pull_script()], check=True)
