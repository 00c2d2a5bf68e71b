"""The application factory. Everything stateful is built in the lifespan from `Settings`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

import anyio
from fastapi import APIRouter, FastAPI
from redis.asyncio import Redis

from cache.breaker import CircuitBreaker
from cache.broadcaster import Broadcaster
from cache.feed import ChangeFeed
from cache.keys import Keys
from cache.read_model import RedisReadModel
from cache.replica import Replica
from cache.stream import Streams
from database.engine import make_engine
from database.migrations import upgrade_to_head
from service import problems
from service.deps import Rules
from service.limits import BodyLimit
from service.propagation import Propagator
from service.reads import Reads
from service.routers import configurations, flags, health, stream
from service.settings import Settings
from service.store import Store

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
STOP_TIMEOUT_SECONDS = 5.0


def redis_clients(settings: Settings, instance: str) -> tuple[Redis, Redis]:
    """(commands, subscription): two clients, so the subscription has a connection of its own.

    Without REDIS_URL both talk to one in-process fakeredis server: single process only.
    """
    if settings.redis_url is None:
        from fakeredis import FakeAsyncRedis, FakeServer  # noqa: PLC0415 - embedded mode only

        server = FakeServer()
        return FakeAsyncRedis(server=server), FakeAsyncRedis(server=server)
    options = {"socket_connect_timeout": 1.0, "socket_timeout": 2.0, "health_check_interval": 5}
    commands = Redis.from_url(settings.redis_url, client_name=f"aurora-{instance}", **options)  # type: ignore[arg-type]
    feed = Redis.from_url(settings.redis_url, client_name=f"aurora-feed-{instance}", **options)  # type: ignore[arg-type]
    return commands, feed


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
        store = Store(
            engine,
            limit=settings.db_pool_size + settings.db_max_overflow,
            retries=settings.write_retries,
            timeout=settings.db_timeout_seconds,
        )
        redis, feed_redis = redis_clients(settings, app.state.instance)
        read_model = RedisReadModel(
            redis, Keys(settings.redis_prefix), feed_length=settings.feed_length
        )
        replica = Replica()
        broadcaster = Broadcaster(settings.sse_queue_size)
        propagator = Propagator(
            store,
            read_model,
            replica,
            wait=settings.propagation_wait_seconds,
            relay_interval=settings.relay_interval_seconds,
        )
        feed = ChangeFeed(
            feed_redis,
            read_model,
            replica,
            broadcaster,
            settings.environments,
            ensure_built=propagator.ensure_built,
        )
        state = app.state
        state.store, state.redis, state.read_model, state.replica = store, redis, read_model, replica
        state.broadcaster, state.propagator, state.feed = broadcaster, propagator, feed
        state.reads = Reads(store, read_model, replica, CircuitBreaker())
        state.streams = Streams(read_model, replica, broadcaster)
        state.shutdown = anyio.Event()  # set by sse-starlette when the server begins to exit

        stop = asyncio.Event()

        async def close_streams_on_exit() -> None:
            await state.shutdown.wait()
            broadcaster.close("server shutting down")

        tasks = [
            asyncio.create_task(feed.run(stop), name="change-feed"),
            asyncio.create_task(propagator.relay(stop), name="outbox-relay"),
            asyncio.create_task(close_streams_on_exit(), name="stream-closer"),
        ]
        with contextlib.suppress(TimeoutError):  # serve anyway: reads fall back to Redis, SQL
            await asyncio.wait_for(feed.connected.wait(), settings.replica_wait_seconds)
        log.info(
            "aurora-config ready: database=%s redis=%s environments=%s replica=%s",
            settings.database_backend,
            "embedded (single process)" if settings.redis_url is None else "server",
            ",".join(settings.environments),
            "live" if feed.connected.is_set() else "not yet",
        )
        try:
            yield
        finally:
            stop.set()
            state.shutdown.set()
            broadcaster.close("server shutting down")
            # The loops hold nothing that cancellation could lose: unapplied changes stay in
            # the outbox, and a new subscription catches up by cursor.
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=STOP_TIMEOUT_SECONDS)
            await redis.aclose()
            await feed_redis.aclose()
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
    # Names this process in Redis CLIENT LIST and /status.
    app.state.instance = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    problems.install(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)

    api = APIRouter(prefix=API_PREFIX)
    api.include_router(configurations.router)
    api.include_router(flags.router)
    api.include_router(stream.router)
    app.include_router(api)
    app.include_router(health.router)
    return app
