"""Turn one bench run's raw outputs into bench/RESULTS.md (figures, references, ratios)."""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}

NOTES = [
    "## Notes: where a target is missed, and what varies",
    "",
    "- **Memory per idle stream** misses 20 KiB because the floor is above it: the bare sse-starlette "
    "endpoint above, on the same uvicorn stack, costs about 43 KiB per connection by itself (sse-starlette "
    "runs a task group per stream; uvicorn keeps a protocol object, its buffers and the request cycle). "
    "Aurora's stream costs less than that reference: plainly valid stream requests skip the FastAPI route "
    "(service/fast.py), heartbeats come from the stream itself rather than sse-starlette's ping task, and "
    "each subscriber's mailbox holds no buffer while idle. Under 20 KiB would mean leaving sse-starlette, "
    "which the issue prescribes, for a one-task ASGI stream; not done. The figure moves by a few KiB from "
    "run to run (35 to 38 seen).",
    "- **Absolute throughput** differs from the issue's figures (bare Starlette 23,800 req/s there) with "
    "the machine; the service and the references run on uvloop and httptools, so the ratios compare like "
    "with like.",
    "- **Delivery p99 at 1,000 subscribers** was 72 to 245 ms in earlier runs: full garbage collections, "
    "each walking the ~350,000 objects that 1,000 open streams keep (about 200 ms), ran about once a second "
    "because fan-out's short-lived objects were promoted at CPython's young-generation threshold of 700. "
    "The service raises it to 10,000 (service/__main__.py): in A/B runs of the same code, p99 went from "
    "~245 ms to 45-59 ms, with no full collection during a run.",
    "- The **full FastAPI route** (`evaluate`) pays for dependency injection and response validation; the two "
    "hottest reads (`check`, `value`) skip that through an ASGI fast path that answers from the same "
    "in-process replica with the same code (tests/integration/test_fast_path.py proves identical answers).",
    "",
]


def wrk(path: Path) -> dict[str, float]:
    text = path.read_text()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    latency = {}
    for pct in ("50", "99"):
        value, unit = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
        latency[pct] = float(value) * UNITS[unit]
    return {"rps": rps, "p50": latency["50"], "p99": latency["99"]}


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory = next(
        line.split()[1]
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return (
        f"{cpu}, {os.cpu_count()} cores, {int(memory) // 1024 // 1024} GiB, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def main() -> None:
    out = Path(sys.argv[1])
    bare1, bare2 = wrk(out / "wrk-bare.txt"), wrk(out / "wrk-bare-again.txt")
    bare = {
        "rps": (bare1["rps"] + bare2["rps"]) / 2,
        "p50": (bare1["p50"] + bare2["p50"]) / 2,
        "p99": (bare1["p99"] + bare2["p99"]) / 2,
    }
    http = {name: wrk(out / f"wrk-{name}.txt") for name in ("check", "value", "evaluate")}
    sse1, sse1000 = (json.loads((out / f"sse-{n}.json").read_text()) for n in (1, 1000))
    mem, mem_bare = (json.loads((out / f"mem-{n}.json").read_text()) for n in ("service", "bare"))
    rebuild = json.loads((out / "rebuild.json").read_text())
    sdk = json.loads((out / "sdk.json").read_text())["ns_per_call"]
    one, eight = (json.loads((out / f"writes-{n}.json").read_text()) for n in (1, 8))
    lines = [
        "# Benchmark results",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `make bench` (bench/run.sh) on: {machine()}.",
        "Load generator and servers share the machine's cores (wrk -t2 -c50, 10 s after a 3 s warm-up; "
        "one uvicorn worker each, the same uvicorn settings). Every figure is set against a reference "
        "measured in the same run; the ratios are the result, absolute numbers vary with the machine.",
        "The service ran production-shaped: MariaDB, Redis, authentication on (a bearer token on every request), "
        "logs at WARNING.",
        "",
        "## HTTP reads (reference: a bare Starlette endpoint returning a constant JSON, "
        f"{bare['rps']:,.0f} req/s, mean of a run before and after)",
        "",
        "| endpoint | req/s | ratio to bare | p50 ms | p99 ms | target | |",
        "|---|---|---|---|---|---|---|",
        f"| bare Starlette | {bare['rps']:,.0f} | 1.00 | {bare['p50']:.2f} | {bare['p99']:.2f} | | |",
    ]
    targets = {"check": 0.60}
    for name, label in (
        ("check", "`GET /feature-flags/check/{key}`"),
        ("value", "`GET /configurations/value/{key}`"),
        ("evaluate", "`GET /feature-flags/evaluate/{key}` (full FastAPI route)"),
    ):
        ratio = http[name]["rps"] / bare["rps"]
        target = targets.get(name)
        lines.append(
            f"| {label} | {http[name]['rps']:,.0f} | {ratio:.2f} | {http[name]['p50']:.2f} | "
            f"{http[name]['p99']:.2f} | {'≥ 0.60' if target else ''} | {verdict(ratio >= target) if target else ''} |"
        )
    lines += [
        "",
        "## Write → SSE delivery (time from sending the write to each subscriber receiving its event)",
        "",
        "| subscribers | writes | deliveries | missing | p50 ms | p99 ms | max ms | target | |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for result in (sse1, sse1000):
        ok = result["p99_ms"] <= 100 and result["missing"] == 0
        lines.append(
            f"| {result['subscribers']:,} | {result['writes']} | {result['deliveries']:,} | {result['missing']} | "
            f"{result['p50_ms']:.1f} | {result['p99_ms']:.1f} | {result['max_ms']:.1f} | p99 ≤ 100 ms, none missing | {verdict(ok)} |"
        )
    per, per_bare = mem["kib_per_stream"], mem_bare["kib_per_stream"]
    lines += [
        "",
        "## Memory per idle SSE connection (server RSS growth over 1,000 idle streams)",
        "",
        "| server | KiB per stream | ratio | target | |",
        "|---|---|---|---|---|",
        f"| bare sse-starlette endpoint (reference) | {per_bare:.1f} | 1.00 | | |",
        f"| Aurora `GET /api/v1/stream` | {per:.1f} | {per / per_bare:.2f} | ≤ 20 KiB | {verdict(per <= 20)} |",
        "",
        f"## Rebuilding the read model ({rebuild['items']:,} configurations)",
        "",
        "| step | seconds | ratio to the plain SELECT | target | |",
        "|---|---|---|---|---|",
        f"| reference: `SELECT *` of the rows into dicts | {rebuild['select_seconds']:.2f} | 1.00 | | |",
        f"| rebuild (database → staged Redis hashes → swap, new epoch) | {rebuild['rebuild_seconds']:.2f} | "
        f"{rebuild['rebuild_seconds'] / rebuild['select_seconds']:.2f} | ≤ 5 s | {verdict(rebuild['rebuild_seconds'] <= 5)} |",
        f"| hydrate an instance's replica from Redis | {rebuild['hydrate_seconds']:.2f} | "
        f"{rebuild['hydrate_seconds'] / rebuild['select_seconds']:.2f} | | |",
        "",
        "## Writes of one environment (MariaDB, `bench/writes.py`, through the Store and use case)",
        "",
        "Every change bumps its environment's committed sequence (16 shards chosen by item key) in "
        "its own transaction. The reference is one writer; 8 writers of distinct keys should scale, "
        "not queue on one row.",
        "",
        "| writers | writes/s | ratio to 1 writer |",
        "|---|---|---|",
        f"| 1 (reference) | {one['writes_per_second']:.0f} | 1.00 |",
        f"| 8 | {eight['writes_per_second']:.0f} | "
        f"{eight['writes_per_second'] / one['writes_per_second']:.2f} |",
        "",
        "## Client SDK (ns per call, one process, `timeit`, best of 7)",
        "",
        "| call | ns | ratio to a dict lookup | target | |",
        "|---|---|---|---|---|",
    ]
    floor = sdk["dict lookup"]
    unleash = sdk["UnleashClient.is_enabled"]
    for name, value in sdk.items():
        target, ok = "", ""
        if name == "AuroraClient.is_enabled":
            target = "≤ 500 ns and ≥ 50× faster than Unleash"
            ok = verdict(value <= 500 and unleash / value >= 50)
        lines.append(f"| {name} | {value:,.0f} | {value / floor:.1f} | {target} | {ok} |")
    lines += [
        "",
        f"`AuroraClient.is_enabled` is {unleash / sdk['AuroraClient.is_enabled']:.0f}× faster than "
        "UnleashClient 6.9.1's `is_enabled` on an equivalent locally cached flag (gradual rollout 25 %, "
        "bootstrapped, no server), and both put the same users in the cohort (checked by bench/sdk.py).",
        "",
        *NOTES,
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
