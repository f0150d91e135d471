"""Finding a route's proxy replicas in Pod objects, and reading their /metrics over HTTP."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from llmroute.quota import scrape
from llmroute.quota.scrape import (
    ProxyReplica,
    fetch_metrics,
    replica_from_pod,
    replicas_from_pods,
    scrape_replicas,
)
from llmroute.render.labels import proxy_pod_selector

METRICS = (Path(__file__).parent / "data" / "litellm_metrics.txt").read_text()


def pod(
    name: str = "gw-litellm-abc",
    uid: str = "uid-1",
    phase: str = "Running",
    ip: str | None = "127.0.0.1",
    ready: bool = True,
    restarts: int = 0,
    started: str | None = "2026-03-02T10:00:00Z",
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "phase": phase,
        "startTime": "2026-03-02T09:59:58Z",
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        "containerStatuses": [
            {
                "name": "litellm",
                "restartCount": restarts,
                "state": {"running": {"startedAt": started}} if started else {"waiting": {}},
            }
        ],
    }
    if ip:
        status["podIP"] = ip
    return {"metadata": {"name": name, "uid": uid}, "status": status}


def test_selector_names_the_routes_proxy_pods() -> None:
    assert proxy_pod_selector("gw") == "llmroute.dev/route=gw,app.kubernetes.io/component=proxy"


def test_a_running_pod_is_a_replica_to_scrape() -> None:
    replica = replica_from_pod(pod(restarts=2))
    assert replica == ProxyReplica(
        name="gw-litellm-abc",
        uid="uid-1",
        ip="127.0.0.1",
        running=True,
        ready=True,
        started=dt.datetime(2026, 3, 2, 10, tzinfo=dt.UTC),
        restarts=2,
    )
    assert replica.url == "http://127.0.0.1:4000/metrics/"


def test_pods_that_are_not_ready_are_still_scraped() -> None:
    # A replica on its way out still holds the spend of its last requests.
    replica = replica_from_pod(pod(ready=False))
    assert replica is not None and replica.url is not None and not replica.ready


def test_pods_without_an_ip_or_not_running_exist_but_are_not_scraped() -> None:
    pending = replica_from_pod(pod(phase="Pending", ip=None, started=None))
    assert pending is not None and pending.url is None
    assert pending.started == dt.datetime(2026, 3, 2, 9, 59, 58, tzinfo=dt.UTC)
    assert replica_from_pod(pod(phase="Succeeded")) is None
    assert replica_from_pod(pod(phase="Failed")) is None


def test_ipv6_addresses_are_bracketed() -> None:
    replica = replica_from_pod(pod(ip="fd00::7"))
    assert replica is not None and replica.url == "http://[fd00::7]:4000/metrics/"


def test_replicas_are_sorted_by_name() -> None:
    names = [r.name for r in replicas_from_pods([pod("b", "2"), pod("a", "1")])]
    assert names == ["a", "b"]


class _Proxy(BaseHTTPRequestHandler):
    """Answers as LiteLLM does: /metrics redirects to /metrics/, which serves the text."""

    def do_GET(self) -> None:
        if self.path == "/metrics":
            self.send_response(307)
            self.send_header("Location", "/metrics/")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/metrics/":
            body = METRICS.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(scrape, "PROXY_PORT", server.server_address[1])
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_fetch_follows_litellms_redirect(proxy: int) -> None:
    assert fetch_metrics(f"http://127.0.0.1:{proxy}/metrics") == METRICS


def test_scrape_reads_every_replica_and_reports_the_silent_ones(proxy: int) -> None:
    replicas = [
        replica_from_pod(pod("gw-litellm-a", "ua")),
        # Nothing listens there: the connection is refused at once.
        replica_from_pod(pod("gw-litellm-b", "ub", ip="127.0.0.2")),
        replica_from_pod(pod("gw-litellm-c", "uc", phase="Pending", ip=None)),
    ]
    results = scrape_replicas([r for r in replicas if r is not None])
    by_pod = {r.replica.name: r for r in results}
    assert by_pod["gw-litellm-a"].families is not None
    assert by_pod["gw-litellm-a"].error is None
    assert by_pod["gw-litellm-b"].families is None
    assert by_pod["gw-litellm-b"].error
    assert by_pod["gw-litellm-c"].error == "ValueError: no pod IP yet"

    scraped = by_pod["gw-litellm-a"].to_scrape()
    assert scraped.uid == "ua"
    assert scraped.deployments is not None
    assert set(scraped.deployments) == {
        "smart/openai/gpt-4",
        "smart/openai-compatible/gpt-4o",
        "cheap/openai/gpt-4o-mini",
    }
    assert scraped.process_start is not None
    silent = by_pod["gw-litellm-b"].to_scrape()
    assert silent.deployments is None and silent.uid == "ub"


def test_an_unreadable_answer_counts_as_no_answer() -> None:
    replica = replica_from_pod(pod())
    assert replica is not None
    [result] = scrape_replicas([replica], fetch=lambda _: "this is {not prometheus")
    assert result.families is None and result.error


def test_an_api_server_refusal_is_one_line_with_its_message() -> None:
    replica = replica_from_pod(pod())
    assert replica is not None
    refusal = ApiException(status=403, reason="Forbidden")
    refusal.headers = {"Content-Type": "application/json", "Audit-Id": "x"}
    refusal.body = json.dumps(
        {"kind": "Status", "message": 'pods "gw-litellm-a" is forbidden: User "u" cannot get'}
    )

    def refuse(_: object) -> str:
        raise refusal

    [result] = scrape_replicas([replica], fetch=refuse)
    assert (
        result.error == 'HTTP 403 Forbidden: pods "gw-litellm-a" is forbidden: User "u" cannot get'
    )


def test_a_multi_line_error_is_reported_on_one_line() -> None:
    replica = replica_from_pod(pod())
    assert replica is not None

    def fail(_: object) -> str:
        raise OSError("first line\nsecond line")

    [result] = scrape_replicas([replica], fetch=fail)
    assert result.error == "OSError: first line second line"
