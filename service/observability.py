"""Request logs and Prometheus metrics.

One ASGI middleware times every request, gives it a request id (a sane incoming X-Request-ID is
kept, else one is made, and it is echoed back), logs one line (route, status, duration, actor)
and counts it by route template. `/metrics` refreshes the gauges that need a look at the
database or Redis, then renders a registry of this app's own (so several apps in one process,
as in tests, do not collide).
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.headers import header
from service.propagation import Cause, Outcome

log = logging.getLogger("service.requests")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class Metrics:
    """Request metrics, plus a collector that reads the runtime's own counters at scrape time."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "aurora_http_requests",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "aurora_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.probes: dict[str, float | None] = {}  # filled by /metrics before each scrape
        self.runtime: Any = None  # set in the lifespan
        self.registry.register(_RuntimeCollector(self))
        # The labelled children, once per (method, route, status): `labels()` takes a lock and
        # builds a key on every call, a measurable share of a flag check. Route templates,
        # methods and statuses are few, so this stays small.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        children = self._children.get((method, route, status))
        if children is None:
            children = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
            self._children[method, route, status] = children
        children[0].inc()
        children[1].observe(seconds)


class _RuntimeCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return []  # collected fresh each scrape

    def collect(self) -> Iterable[Metric]:
        runtime = self.metrics.runtime
        if runtime is None:
            return
        served = runtime.reads.served
        reads = CounterMetricFamily("aurora_reads", "Reads answered, by tier", labels=["tier"])
        for tier in ("fast_path", "replica", "redis", "database"):
            reads.add_metric([tier], served.get(tier, 0))
        yield reads
        hits = served.get("replica", 0) + served.get("redis", 0) + served.get("fast_path", 0)
        yield CounterMetricFamily("aurora_cache_hits", "Reads from replica or Redis", value=hits)
        yield CounterMetricFamily(
            "aurora_cache_misses", "Reads that fell back to SQL", value=served.get("database", 0)
        )
        outcomes = CounterMetricFamily(
            "aurora_propagation", "Writes by propagation outcome", labels=["outcome"]
        )
        for outcome in Outcome:
            outcomes.add_metric([outcome.value], runtime.propagator.outcomes.get(outcome, 0))
        yield outcomes
        yield CounterMetricFamily(
            "aurora_sse_dropped",
            "SSE subscribers dropped as too slow",
            value=runtime.broadcaster.dropped,
        )
        rebuilds = CounterMetricFamily(
            "aurora_read_model_rebuilds", "Read model rebuilds by this instance", labels=["cause"]
        )
        losses = CounterMetricFamily(
            "aurora_read_model_lost_data",
            "Read models found to lack acknowledged changes (retired by this instance)",
            labels=["cause"],
        )
        for cause in Cause:
            rebuilds.add_metric([cause.value], runtime.propagator.rebuilds.get(cause, 0))
            losses.add_metric([cause.value], runtime.propagator.detections.get(cause, 0))
        yield rebuilds
        yield losses
        yield CounterMetricFamily(
            "aurora_outbox_quarantined",
            "Outbox rows this instance set aside because they cannot be applied",
            value=runtime.propagator.quarantined,
        )
        subscribers = GaugeMetricFamily(
            "aurora_sse_subscribers", "Open SSE streams", labels=["environment"]
        )
        trusted = GaugeMetricFamily(
            "aurora_replica_trusted", "1 while the replica is trusted", labels=["environment"]
        )
        verified = GaugeMetricFamily(
            "aurora_read_model_verified",
            "1 while the read model is proven to hold every acknowledged change",
            labels=["environment"],
        )
        lag = GaugeMetricFamily(
            "aurora_replica_lag_revisions",
            "Redis revision minus the replica's",
            labels=["environment"],
        )
        counts = runtime.broadcaster.counts()
        for environment, copy in runtime.replica.status().items():
            subscribers.add_metric([environment], counts.get(environment, 0))
            trusted.add_metric([environment], 1 if copy["trusted"] else 0)
            proof = runtime.feed.verification(environment)
            verified.add_metric([environment], 1 if proof["verified"] else 0)
            head = self.metrics.probes.get(f"revision:{environment}")
            if head is not None:
                lag.add_metric([environment], head - copy["revision"])
        yield from (subscribers, trusted, verified, lag)
        yield GaugeMetricFamily(
            "aurora_feed_connected",
            "1 while the change subscription is live",
            value=1 if runtime.feed.connected.is_set() else 0,
        )
        for name, help_text in (
            ("redis_up", "1 if Redis answered the last scrape's ping"),
            ("database_up", "1 if the database answered the last scrape's ping"),
            ("outbox_pending", "Changes committed but not yet applied to Redis"),
            ("outbox_oldest_age_seconds", "Age of the oldest pending change"),
        ):
            value = self.metrics.probes.get(name)
            if value is not None:
                yield GaugeMetricFamily(f"aurora_{name}", help_text, value=value)


class Observability:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # Request ids: this process's random prefix and a counter, unique across instances
        # and cheaper than a uuid4 per request.
        self._prefix = secrets.token_hex(6)
        self._ids = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = header(scope, b"x-request-id") or ""
        if not _REQUEST_ID.fullmatch(request_id):
            request_id = f"{self._prefix}-{next(self._ids):x}"
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._record(scope, request_id, status, time.perf_counter() - started)

    @staticmethod
    def _record(scope: Scope, request_id: str, status: int, seconds: float) -> None:
        route = _route(scope)
        principal = scope.get("state", {}).get("principal")
        metrics: Metrics | None = getattr(scope["app"].state, "metrics", None)
        if metrics is not None:
            metrics.observe(scope["method"], route, status, seconds)
        if route in {"/health/live", "/health", "/metrics"} or not log.isEnabledFor(logging.INFO):
            return  # probes and scrapes would drown the log; and no line wanted, no line built
        log.info(
            "%s %s %d %.1fms",
            scope["method"],
            scope["path"],
            status,
            seconds * 1000,
            extra={
                "request_id": request_id,
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
                "actor": principal.name if principal is not None else None,
            },
        )


def _route(scope: Scope) -> str:
    """The route template (bounded label values), never the raw path."""
    if "aurora.route" in scope:
        return str(scope["aurora.route"])
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"
