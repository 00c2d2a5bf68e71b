"""Health and status, outside /api/v1 and open to probes."""

from __future__ import annotations

import time
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from service.deps import StoreDep
from service.errors import Unavailable
from service.usecases import status as status_usecase

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    database: str


class Status(BaseModel):
    service: str
    version: str
    uptime_seconds: float
    environments: list[str]
    backends: dict[str, str]
    counts: dict[str, int]


@router.get("/health", response_model=Health)
@router.get("/health/live", response_model=Health)
async def live() -> Health:
    """The process is up and serving."""
    return Health(status="ok")


@router.get(
    "/health/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "A dependency does not answer"}},
)
async def ready(store: StoreDep) -> JSONResponse:
    """200 only when the database answers; 503 with the reason otherwise."""
    try:
        await store.ping()
    except Exception as exc:  # any failure to answer is "not ready", with its reason shown
        reason = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
        body = Readiness(status="unavailable", database=f"unavailable: {reason}")
        return JSONResponse(body.model_dump(), status_code=503)
    return JSONResponse(Readiness(status="ready", database="ok").model_dump())


@router.get("/status", response_model=Status)
async def service_status(request: Request, store: StoreDep) -> Status:
    settings = request.app.state.settings
    try:
        counts = await store.run(status_usecase.counts)
    except Unavailable:
        counts = {}
    return Status(
        service="aurora-config-service",
        version=request.app.version,
        uptime_seconds=round(time.monotonic() - request.app.state.started, 3),
        environments=list(settings.environments),
        backends={
            "database": settings.database_backend,
            "cache": "none (read model arrives with issue #4)",
        },
        counts=counts,
    )
