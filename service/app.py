"""The application factory. Everything stateful is built in the lifespan from `Settings`."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

from fastapi import APIRouter, FastAPI

from database.engine import make_engine
from database.migrations import upgrade_to_head
from service import problems
from service.deps import Rules
from service.limits import BodyLimit
from service.routers import configurations, flags, health
from service.settings import Settings
from service.store import Store

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            timeout=settings.db_timeout_seconds,
        )
        if settings.database_backend == "sqlite" or settings.migrate_on_start:
            upgrade_to_head(engine)
        app.state.store = Store(
            engine,
            limit=settings.db_pool_size + settings.db_max_overflow,
            retries=settings.write_retries,
            timeout=settings.db_timeout_seconds,
        )
        log.info(
            "aurora-config ready: database=%s environments=%s",
            settings.database_backend,
            ",".join(settings.environments),
        )
        try:
            yield
        finally:
            engine.dispose()

    app = FastAPI(
        title="Aurora Config",
        version=version("aurora-config-service"),
        description="Configuration and feature flags for the Aurora microservices.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.rules = Rules.of(settings)
    app.state.started = time.monotonic()
    problems.install(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)

    api = APIRouter(prefix=API_PREFIX)
    api.include_router(configurations.router)
    api.include_router(flags.router)
    app.include_router(api)
    app.include_router(health.router)
    return app
