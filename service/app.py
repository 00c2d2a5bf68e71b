"""The application factory. Everything stateful is built in the lifespan from `Settings`."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.telemetry import TelemetryConfig
from starlette.middleware.cors import CORSMiddleware

from service import openapi, problems
from service.auth import AuthMiddleware
from service.deps import Rules
from service.fast import FastReads
from service.limits import BodyLimit
from service.observability import Metrics, Observability
from service.paths import CollectionSlash
from service.routers import configurations, evaluate, flags, health, segments, stream, tokens
from service.runtime import Runtime
from service.settings import Settings

ROUTERS = (configurations, flags, evaluate, segments, stream, tokens, health)
#: Collection paths (`/api/v1/tokens/`...): served without the trailing slash too.
COLLECTIONS = [
    route.path
    for module in ROUTERS
    for route in module.router.routes
    if isinstance(route, APIRoute) and route.path.endswith("/")
]


NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime.build(settings, app.state.instance)
        state = app.state
        state.runtime = runtime
        # What request dependencies reach for (service/deps.py), by name.
        state.store, state.reads, state.propagator = (
            runtime.store,
            runtime.reads,
            runtime.propagator,
        )
        state.redis, state.read_model, state.replica = (
            runtime.redis,
            runtime.read_model,
            runtime.replica,
        )
        state.broadcaster, state.feed, state.streams = (
            runtime.broadcaster,
            runtime.feed,
            runtime.streams,
        )
        state.shutdown, state.auth = runtime.shutdown, runtime.auth
        state.metrics.runtime = runtime
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="Aurora Config",
        version=version("aurora-config-service"),
        description="Configuration and feature flags for the Aurora microservices.",
        lifespan=lifespan,
        telemetry=None if settings.opentelemetry else NO_TELEMETRY,
    )
    app.state.settings = settings
    app.state.rules = Rules.of(settings)
    app.state.started = time.monotonic()
    app.state.metrics = Metrics()
    # Names this process in Redis CLIENT LIST and /status.
    app.state.instance = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    problems.install(app)
    openapi.install(app, settings.environments)
    # Added innermost first: a request meets CollectionSlash, Observability, CORS,
    # AuthMiddleware, FastReads, BodyLimit, then the routes. CORS sits outside the rest, so a
    # preflight (which carries no token) is answered before authentication, and answers of the
    # fast path and 401s carry CORS headers too.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(FastReads)  # the hottest reads skip the rest of the stack
    app.add_middleware(AuthMiddleware)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "If-Match", "Last-Event-ID"],
            expose_headers=["ETag", "X-Aurora-Propagation"],
        )
    app.add_middleware(Observability)  # times and logs everything, refusals too
    app.add_middleware(CollectionSlash, collections=COLLECTIONS)  # first: one path per route

    for module in ROUTERS:
        app.include_router(module.router)
    app.state.route_methods = [
        (route.path_regex, route.methods)
        for module in ROUTERS
        for route in module.router.routes
        if isinstance(route, APIRoute)
    ]
    return app
