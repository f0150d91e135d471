"""The demo as a user runs it: `up`, `up` again, `down`, `up` again all succeed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from built_tools import require_tools

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def demo(command: str, state_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "hack/demo.sh", command],
        cwd=REPO,
        env={**os.environ, "LLMROUTE_DEMO_DIR": str(state_dir)},
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    require_tools()
    yield tmp_path / "demo"
    demo("down", tmp_path / "demo")


def test_demo_up_up_down_up(state_dir: Path) -> None:
    first = demo("up", state_dir)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "The gateway is Ready" in first.stdout
    # The demo's Prometheus answers at the URL it prints, and scrapes the proxy pod.
    (prometheus,) = re.findall(r"Prometheus \(proxies, operator, alerts\): (\S+)", first.stdout)
    assert proxy_targets_up(prometheus)

    again = demo("up", state_dir)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already running" in again.stdout
    # The same instructions, so a second `up` is as useful as the first.
    assert first.stdout[first.stdout.index("The gateway is Ready") :] in again.stdout

    down = demo("down", state_dir)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "stopped" in down.stdout
    assert not (state_dir / "supervisor.pid").exists()

    last = demo("up", state_dir)
    assert last.returncode == 0, last.stdout + last.stderr
    assert "The gateway is Ready" in last.stdout


def proxy_targets_up(prometheus: str) -> bool:
    from localcluster import wait_for

    def answered() -> bool:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        query = urllib.parse.quote('up{job="llmroute-proxy"} == 1')
        with opener.open(f"{prometheus}/api/v1/query?query={query}", timeout=10) as response:
            return bool(json.loads(response.read())["data"]["result"])

    return wait_for(answered, timeout=120, interval=1, what="the demo's proxy scraped")
