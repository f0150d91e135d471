"""Streaming through the gateway: time to the first chunk, direct and through the proxy.

One fake OpenAI upstream (localcluster.fakes.FakeOpenAI) that waits ``--upstream-delay``
before it starts a stream, then sends one event every ``--chunk-delay`` (role, six words,
finish, usage, [DONE]). Two paths to it, one streamed chat completion at a time:

(a) direct      the client calls the upstream itself.
(b) llmroute    the litellm proxy exactly as llmroute renders it (gateway_overhead's pod:
                render_route() of a route with one openai target, laid out by the process
                runner's plan_proxy_launch()).

For every request the client records when the first text delta arrived and when the stream
ended (its own clock, one keep-alive connection, http.client). The proxy passing chunks on
as they come shows as a first-chunk time near the upstream's delay and an end time near the
upstream's whole stream, rather than a first chunk that arrives only with the last.

    .venv/bin/python -m benchmarks.streaming --requests 50 --out benchmarks/results/streaming.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

from benchmarks.common import load_average, machine, now_iso, summary_ms, write_results
from benchmarks.gateway_overhead import (
    MASTER_KEY,
    MODEL,
    UPSTREAM_MODEL,
    llmroute_pod,
    start_proxy,
)
from localcluster import FakeOpenAI, wait_http_ok

# A loopback address of its own, apart from the gateway benchmark's proxies.
PROXY_IP = "127.0.3.5"


def stream_once(url: str, key: str, model: str) -> tuple[float, float, str]:
    """(seconds to the first text delta, seconds to the end, the text) of one stream."""
    parsed = urllib.parse.urlsplit(url)
    body = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    )
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    try:
        started = time.perf_counter()
        connection.request(
            "POST",
            parsed.path,
            body,
            {"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        answer = connection.getresponse()
        if answer.status != 200:
            raise RuntimeError(f"{url}: {answer.status} {answer.read()[:300]!r}")
        first: float | None = None
        text = []
        while line := answer.readline():
            if not line.startswith(b"data: ") or line.strip() == b"data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            for choice in chunk.get("choices") or ():
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    if first is None:
                        first = time.perf_counter() - started
                    text.append(piece)
        ended = time.perf_counter() - started
    finally:
        connection.close()
    if first is None:
        raise RuntimeError(f"{url}: the stream had no text")
    return first, ended, "".join(text)


def measure(url: str, key: str, model: str, requests: int, warmup: int) -> dict[str, Any]:
    for _ in range(warmup):
        stream_once(url, key, model)
    firsts, ends = [], []
    load_before = load_average()
    for _ in range(requests):
        first, ended, _text = stream_once(url, key, model)
        firsts.append(first)
        ends.append(ended)
    return {
        "first_chunk": summary_ms(firsts),
        "end": summary_ms(ends),
        "load_before": load_before,
        "load_after": load_average(),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    upstream = FakeOpenAI(delay=args.upstream_delay, chunk_delay=args.chunk_delay)
    upstream.start("127.0.0.1")
    results: dict[str, Any] = {
        "benchmark": "streaming",
        "started": now_iso(),
        "machine": machine(),
        "upstream": {"delay_s": args.upstream_delay, "chunk_delay_s": args.chunk_delay},
        "requests": args.requests,
        "paths": {},
    }
    with tempfile.TemporaryDirectory(prefix="llmroute-bench-stream-") as tmp:
        workdir = Path(tmp)
        inputs, _config = llmroute_pod(upstream.api_base)
        target = start_proxy("llmroute", inputs, workdir, None, PROXY_IP)
        assert target.process is not None and target.launch is not None
        try:
            wait_http_ok(target.launch.health_url, 180, process=target.process)
            direct = f"{upstream.api_base}/chat/completions"
            results["paths"]["direct"] = measure(
                direct, "sk-any", UPSTREAM_MODEL, args.requests, args.warmup
            )
            results["paths"]["llmroute"] = measure(
                target.url, MASTER_KEY, MODEL, args.requests, args.warmup
            )
        finally:
            target.process.stop()
            upstream.stop()
    results["finished"] = now_iso()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.streaming", description=__doc__)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--upstream-delay", type=float, default=0.05)
    parser.add_argument("--chunk-delay", type=float, default=0.02)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    results = run(args)
    for name, path in results["paths"].items():
        first, end = path["first_chunk"], path["end"]
        print(
            f"{name:9} first chunk p50 {first['p50_ms']} ms p90 {first['p90_ms']} ms;"
            f" end p50 {end['p50_ms']} ms p90 {end['p90_ms']} ms"
        )
    print(write_results(results, args.out, "streaming"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
