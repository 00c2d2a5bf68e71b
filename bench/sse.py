"""Write -> SSE delivery latency with N subscribers, and server memory per idle stream.

Subscribers are raw asyncio connections (an HTTP client per stream would cost the shared CPU
more than the server being measured). Each write's send time is taken just before the request;
each subscriber stamps the moment the event carrying that version arrives.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import time
from pathlib import Path

import httpx

VERSION = re.compile(rb'"version":(\d+)')


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Subscriber:
    def __init__(self) -> None:
        self.snapshot = asyncio.Event()
        self.arrivals: dict[int, float] = {}

    async def run(self, port: int, path: str, headers: str) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: bench\r\n{headers}Accept: text/event-stream\r\n\r\n".encode()
        )
        await writer.drain()
        try:
            while line := await reader.readline():
                if line.startswith(b"event: snapshot") or line.startswith(b"data: {}"):
                    self.snapshot.set()
                elif line.startswith(b"data:") and b'"kind"' in line:
                    match = VERSION.search(line)
                    if match:
                        self.arrivals.setdefault(int(match.group(1)), time.perf_counter())
        finally:
            writer.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def open_streams(
    count: int, port: int, path: str, headers: str
) -> tuple[list[Subscriber], list[asyncio.Task[None]]]:
    subscribers = [Subscriber() for _ in range(count)]
    tasks = []
    for index, sub in enumerate(subscribers):
        tasks.append(asyncio.create_task(sub.run(port, path, headers)))
        if index % 100 == 99:
            await asyncio.sleep(0.05)  # do not trip the listen backlog
    async with asyncio.timeout(120):
        await asyncio.gather(*(s.snapshot.wait() for s in subscribers))
    return subscribers, tasks


async def delivery(args: argparse.Namespace) -> dict[str, object]:
    headers = f"Authorization: Bearer {args.token}\r\n"
    subscribers, tasks = await open_streams(
        args.subscribers, args.port, "/api/v1/stream?environment=production", headers
    )
    sent: dict[int, float] = {}
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{args.port}", headers={"Authorization": f"Bearer {args.token}"}
    ) as http:
        version = (await http.get("/api/v1/feature-flags/key/bench_flag")).json()["version"]
        for i in range(args.writes):
            percentage = (version + i) % 100 + 1
            started = time.perf_counter()
            response = await http.put(
                "/api/v1/feature-flags/rollout/bench_flag", params={"percentage": percentage}
            )
            sent[response.json()["version"]] = started
            await asyncio.sleep(args.spacing)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(len(s.arrivals) < len(sent) for s in subscribers):
        await asyncio.sleep(0.05)
    latencies = [
        (s.arrivals[v] - t) * 1000 for s in subscribers for v, t in sent.items() if v in s.arrivals
    ]
    missing = sum(1 for s in subscribers for v in sent if v not in s.arrivals)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "subscribers": args.subscribers,
        "writes": args.writes,
        "deliveries": len(latencies),
        "missing": missing,
        "p50_ms": statistics.median(latencies),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies),
    }


async def memory(args: argparse.Namespace) -> dict[str, object]:
    headers = f"Authorization: Bearer {args.token}\r\n" if args.token else ""
    await asyncio.sleep(1)
    before = rss_kib(args.pid)
    subscribers, tasks = await open_streams(args.subscribers, args.port, args.path, headers)
    await asyncio.sleep(2)  # let allocations settle
    after = rss_kib(args.pid)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "streams": len(subscribers),
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_stream": (after - before) / len(subscribers),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["delivery", "memory"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", default="")
    parser.add_argument("--subscribers", type=int, default=1)
    parser.add_argument("--writes", type=int, default=100)
    parser.add_argument("--spacing", type=float, default=0.02)
    parser.add_argument("--pid", type=int, default=0)
    parser.add_argument("--path", default="/api/v1/stream?environment=production")
    args = parser.parse_args()
    result = asyncio.run(delivery(args) if args.mode == "delivery" else memory(args))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
