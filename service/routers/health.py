"""Health and status, outside /api/v1 and open to probes."""

from __future__ import annotations

import asyncio
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
from service.usecases import outbox
from service.usecases import status as status_usecase

router = APIRouter(tags=["operations"])

REDIS_PING_SECONDS = 1.0


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "degraded", "unavailable"]
    database: str
    redis: str


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
    try:
        async with asyncio.timeout(REDIS_PING_SECONDS):
            await request.app.state.redis.ping()
    except (RedisError, OSError, TimeoutError) as exc:
        return f"unavailable: {type(exc).__name__}"
    return "ok"


@router.get("/health", response_model=Health)
@router.get("/health/live", response_model=Health)
async def live() -> Health:
    """The process is up and serving."""
    return Health(status="ok")


@router.get(
    "/health/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "The database does not answer"}},
)
async def ready(request: Request, store: StoreDep) -> JSONResponse:
    """200 when the database answers (`degraded` if Redis does not: reads then come from the
    database); 503 with the reason when the database does not."""
    redis = await _redis_health(request)
    try:
        await store.ping()
    except Exception as exc:  # any failure to answer is "not ready", with its reason shown
        reason = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
        body = Readiness(status="unavailable", database=f"unavailable: {reason}", redis=redis)
        return JSONResponse(body.model_dump(), status_code=503)
    status = "ready" if redis == "ok" else "degraded"
    return JSONResponse(Readiness(status=status, database="ok", redis=redis).model_dump())


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
