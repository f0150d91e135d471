"""A closed-loop HTTP load generator: C clients, each sending its next request when the
last one is answered, over kept-alive connections.

It runs in a process of its own (the gateway harness starts it), so it shares no
interpreter lock with the upstream fake or the harness, and reports its own CPU use: a
generator that needs a whole core is the bottleneck, not the server it measures.

    python -m benchmarks.loadgen --url http://127.0.0.1:4000/v1/chat/completions \
        --key sk-... --model smart --concurrency 10 --duration 15

Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from collections import Counter
from typing import Any

import aiohttp

from benchmarks.common import summary_ms


async def _drive(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    concurrency: int,
    requests: int | None,
    duration: float | None,
) -> tuple[list[float], Counter[str], float]:
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    issued = 0
    end = time.perf_counter() + duration if duration is not None else None

    async def client() -> None:
        nonlocal issued
        while True:
            if requests is not None:
                if issued >= requests:
                    return
                issued += 1
            elif end is not None and time.perf_counter() >= end:
                return
            started = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError, OSError) as error:
                errors[type(error).__name__] += 1
                continue
            if status == 200:
                latencies.append(time.perf_counter() - started)
            else:
                errors[f"HTTP {status}"] += 1

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies, errors, time.perf_counter() - started


async def run(
    url: str,
    key: str,
    model: str,
    *,
    concurrency: int,
    requests: int | None = None,
    duration: float | None = None,
    warmup: float = 0.0,
) -> dict[str, Any]:
    body = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "Say hello."}]}
    ).encode()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    # One connection per client, kept alive between requests (what a real SDK client does).
    connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=120)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, trust_env=False
    ) as session:
        if warmup > 0:
            await _drive(
                session,
                url,
                body,
                headers,
                concurrency=concurrency,
                requests=None,
                duration=warmup,
            )
        cpu_before = _cpu_seconds()
        latencies, errors, elapsed = await _drive(
            session,
            url,
            body,
            headers,
            concurrency=concurrency,
            requests=requests,
            duration=duration,
        )
        cpu = _cpu_seconds() - cpu_before
    return {
        "concurrency": concurrency,
        "ok": len(latencies),
        "errors": dict(errors),
        "elapsed_s": round(elapsed, 3),
        "requests_per_s": round(len(latencies) / elapsed, 1) if elapsed > 0 else None,
        "latency": summary_ms(latencies),
        # Share of one core the generator itself used while measuring.
        "generator_cpu": round(cpu / elapsed, 2) if elapsed > 0 else None,
    }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadgen", description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", default="sk-none")
    parser.add_argument("--model", required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--requests", type=int, help="stop after this many requests")
    group.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--warmup", type=float, default=0.0, help="seconds of unmeasured load")
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    result = runner(
        run(
            args.url,
            args.key,
            args.model,
            concurrency=args.concurrency,
            requests=args.requests,
            duration=args.duration,
            warmup=args.warmup,
        )
    )
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
