"""The benchmark harnesses still run end to end (docs/benchmarks.md).

Tiny sizes, and only the shape of the results is checked: benchmarks are never timed
assertions. The operator and gateway harnesses run at once, as separate processes, to keep
their test short; the streaming harness needs no cluster and runs on its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from built_tools import require_tools

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
KINDS = ("ConfigMap", "Deployment", "Service", "NetworkPolicy", "Secret")


def _start(module: str, *args: str, out: Path, log: Path) -> subprocess.Popen:
    with log.open("wb") as stream:
        return subprocess.Popen(
            [sys.executable, "-m", module, *args, "--out", str(out)],
            cwd=REPO_ROOT,
            stdout=stream,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _finish(process: subprocess.Popen, log: Path, timeout: float) -> None:
    try:
        code = process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(f"{process.args[2]} did not finish in {timeout}s:\n{log.read_text()[-3000:]}")
    assert code == 0, log.read_text()[-3000:]


def test_harnesses_produce_well_formed_results(tmp_path: Path) -> None:
    require_tools()
    operator_out, gateway_out = tmp_path / "operator.json", tmp_path / "gateway.json"
    operator_log, gateway_log = tmp_path / "operator.log", tmp_path / "gateway.log"
    operator = _start(
        "benchmarks.operator_scale",
        *("--routes", "3", "--idle", "2", "--probes", "2", "--quiet", "1"),
        *("--workdir", str(tmp_path / "operator")),
        out=operator_out,
        log=operator_log,
    )
    gateway = _start(
        "benchmarks.gateway_overhead",
        *("--concurrency", "1,2", "--requests", "20", "--warmup", "0"),
        # Unpinned: the two proxies start side by side.
        *("--proxy-cpus", "", "--client-cpus", ""),
        out=gateway_out,
        log=gateway_log,
    )
    try:
        _finish(gateway, gateway_log, 240)
        _finish(operator, operator_log, 300)
    finally:
        for process in (operator, gateway):
            if process.poll() is None:
                process.kill()
                process.wait()

    operator_result = json.loads(operator_out.read_text())
    assert operator_result["benchmark"] == "operator"
    assert operator_result["machine"]["nproc"] >= 1
    [size] = operator_result["sizes"]
    assert size["routes"] == 3
    assert size["from_empty"]["converged"] is True
    assert size["from_empty"]["apply_to_observed"]["count"] == 3
    assert size["from_empty"]["children"] == dict.fromkeys(KINDS, 3)
    assert size["steady_state"]["apply_to_observed"]["count"] == 2
    idle = size["idle"]["operator_requests"]
    assert set(idle) == {"requests", "writes", "by_verb", "writes_by_resource"}
    assert size["restart_unchanged"]["resumed"] is True
    assert size["restart_changed"]["converged"] is True
    for floor in ("before_operator", "after_operator"):
        assert size["floor"][floor]["children"] == dict.fromkeys(KINDS, 3)
    assert size["ratios"]["from_empty_over_floor"] > 0
    assert size["from_empty"]["memory"]["rss_mib"] > 0
    for phase in ("from_empty", "idle", "restart_unchanged", "restart_changed"):
        assert len(size[phase]["load_average_before"]) == 3

    gateway_result = json.loads(gateway_out.read_text())
    assert gateway_result["benchmark"] == "gateway"
    assert set(gateway_result["paths"]) == {"direct", "llmroute", "chart", "bare"}
    for path in gateway_result["paths"].values():
        assert [level["concurrency"] for level in path["levels"]] == [1, 2]
        for level in path["levels"]:
            assert level["ok"] == 20, level
            assert level["errors"] == {}, level
            assert level["latency"]["p50_ms"] > 0
    assert [row["concurrency"] for row in gateway_result["comparison"]] == [1, 2]
    assert "--num_workers" in gateway_result["argv"]["llmroute"]
    assert "--num_workers" not in gateway_result["argv"]["chart"]
    # (d) bare LiteLLM runs (b)'s number of workers, so the two differ by their config only.
    workers = gateway_result["argv"]["llmroute"].index("--num_workers") + 1
    bare_workers = gateway_result["argv"]["bare"].index("--num_workers") + 1
    assert (
        gateway_result["argv"]["llmroute"][workers] == gateway_result["argv"]["bare"][bare_workers]
    )
    cpu = gateway_result["summary"]["cpu_ms_per_request"]
    assert cpu["llmroute"] > 0 and cpu["bare"] > 0
    lines = gateway_result["summary"]["lines"]
    assert lines[0].startswith("llmroute / bare LiteLLM CPU per request: ")
    assert lines[1].startswith("llmroute / LiteLLM chart default throughput at concurrency 10: ")


def test_streaming_harness_produces_well_formed_results(tmp_path: Path) -> None:
    out, log = tmp_path / "streaming.json", tmp_path / "streaming.log"
    streaming = _start(
        "benchmarks.streaming",
        *("--requests", "3", "--warmup", "0", "--chunk-delay", "0.001"),
        out=out,
        log=log,
    )
    try:
        _finish(streaming, log, 240)
    finally:
        if streaming.poll() is None:
            streaming.kill()
            streaming.wait()

    result = json.loads(out.read_text())
    assert result["benchmark"] == "streaming"
    assert set(result["paths"]) == {"direct", "llmroute"}
    for path in result["paths"].values():
        assert path["first_chunk"]["count"] == path["end"]["count"] == 3
        assert 0 < path["first_chunk"]["p50_ms"] <= path["end"]["max_ms"]
