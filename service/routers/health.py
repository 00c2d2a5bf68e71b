"""Health and status, outside /api/v1 and open to probes."""

from __future__ import annotations

import time
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from redis.exceptions import RedisError

from database.models import utcnow
from service.deps import StoreDep
from service.errors import Unavailable
from service.readiness import Report, redis_health
from service.usecases import outbox
from service.usecases import status as status_usecase

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: Literal["ok"]


class SchemaOut(BaseModel):
    current: str | None  # None: no Alembic revision recorded (an empty database)
    head: str  # the revision this version needs
    state: Literal["current", "missing", "behind", "ahead", "unknown"]


class Readiness(BaseModel):
    status: Literal["ready", "degraded", "unavailable"]
    reasons: list[str]  # empty when ready; each names what is wrong and what clients see
    database: str  # "ok" or "unavailable: <why>"
    schema_revision: SchemaOut
    redis: str  # "ok" or "unavailable: <why>"
    feed: Literal["connected", "disconnected"]
    replica: dict[str, Literal["verified", "trusted", "untrusted"]]  # per environment

    @classmethod
    def of(cls, report: Report, head: str) -> Readiness:
        schema = report.schema
        return cls(
            status=report.status,
            reasons=list(report.reasons),
            database=report.database,
            schema_revision=SchemaOut(
                current=None if schema is None else schema.current,
                head=head,
                state="unknown" if schema is None else schema.verdict,
            ),
            redis=report.redis,
            feed="connected" if report.feed_connected else "disconnected",
            replica=dict(report.replicas),
        )


class Status(BaseModel):
    service: str
    version: str
    instance: str
    uptime_seconds: float
    environments: list[str]
    backends: dict[str, str]
    counts: dict[str, int]
    read_model: dict[str, Any]
    outbox: dict[str, Any]
    stream: dict[str, Any]


async def _redis_health(request: Request) -> str:
    return await redis_health(request.app.state.redis)


@router.get("/health", response_model=Health)
@router.get("/health/live", response_model=Health)
async def live() -> Health:
    """The process is up and serving."""
    return Health(status="ok")


@router.get(
    "/health/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "This instance cannot serve"}},
)
async def ready(request: Request) -> JSONResponse:
    """200 `ready`; 200 `degraded` while reads are still served (the database down with a
    trusted replica, or Redis down with the database up); 503 `unavailable` when this instance
    cannot serve (the schema not migrated, no database and no trusted replica, or the change
    feed down while Redis answers). The reasons and every subsystem are in the body."""
    readiness = request.app.state.runtime.readiness
    report = await readiness.check()
    body = Readiness.of(report, readiness.head)
    return JSONResponse(body.model_dump(), status_code=report.http_status)


@router.get("/status", response_model=Status)
async def service_status(request: Request, store: StoreDep) -> Status:
    state = request.app.state
    settings = state.settings
    try:
        counts = await store.run(status_usecase.counts)
        pending, oldest = await store.run(outbox.backlog)
        backlog: dict[str, Any] = {"pending": pending, "oldest": oldest}
    except Unavailable:
        counts, backlog = {}, {"pending": None, "error": "database unavailable"}
    replica = state.replica.status()
    for environment, copy in replica.items():
        copy.update(state.feed.verification(environment))
        try:
            head = await state.read_model.revision(environment)
            copy["redis_revision"], copy["lag"] = head, head - copy["revision"]
        except (RedisError, OSError):
            copy["redis_revision"], copy["lag"] = None, None
    return Status(
        service="aurora-config-service",
        version=request.app.version,
        instance=state.instance,
        uptime_seconds=round(time.monotonic() - state.started, 3),
        environments=list(settings.environments),
        backends={
            "database": settings.database_backend,
            "redis": "embedded (single process)" if settings.redis_url is None else "server",
        },
        counts=counts,
        read_model={
            "feed_connected": state.feed.connected.is_set(),
            "replica": replica,
            "resyncs": state.feed.resyncs,
            "rebuilds": sum(state.propagator.rebuilds.values()),
            "rebuilds_by_cause": dict(state.propagator.rebuilds),
            "lost_data_detected": dict(state.propagator.detections),
            "outbox_quarantined": state.propagator.quarantined,
            "redis_breaker": state.reads.breaker.state,
            "served": dict(state.reads.served),
        },
        outbox=backlog,
        stream={"subscribers": state.broadcaster.counts(), "dropped": state.broadcaster.dropped},
    )


@router.get("/metrics", response_class=PlainTextResponse, include_in_schema=True)
async def metrics(request: Request, store: StoreDep) -> PlainTextResponse:
    """Prometheus metrics (text format 0.0.4)."""
    state = request.app.state
    probes = state.metrics.probes
    probes["redis_up"] = 1.0 if await _redis_health(request) == "ok" else 0.0
    try:
        pending, oldest = await store.run(outbox.backlog)
        probes["database_up"], probes["outbox_pending"] = 1.0, float(pending)
        age = (utcnow() - oldest).total_seconds() if oldest else 0.0
        probes["outbox_oldest_age_seconds"] = max(0.0, age)
    except Unavailable:
        probes["database_up"] = 0.0
        probes.pop("outbox_pending", None)
        probes.pop("outbox_oldest_age_seconds", None)
    for environment in state.settings.environments:
        try:
            probes[f"revision:{environment}"] = float(await state.read_model.revision(environment))
        except (RedisError, OSError):
            probes[f"revision:{environment}"] = None
    return PlainTextResponse(
        generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
