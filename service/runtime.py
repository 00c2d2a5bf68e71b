"""Everything stateful one process runs, built from Settings: started and stopped as one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import anyio
from redis.asyncio import Redis
from sqlalchemy import Engine

from cache.breaker import CircuitBreaker
from cache.broadcaster import Broadcaster
from cache.feed import ChangeFeed
from cache.keys import Keys
from cache.read_model import RedisReadModel
from cache.replica import Replica
from cache.stream import Streams
from database.engine import make_engine
from database.migrations import upgrade_to_head
from service.auth import Authenticator
from service.propagation import Propagator
from service.reads import Reads
from service.settings import Settings
from service.store import Store

log = logging.getLogger(__name__)

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
    url = settings.redis_url
    commands = Redis.from_url(url, client_name=f"aurora-{instance}", **options)  # type: ignore[arg-type]
    feed = Redis.from_url(url, client_name=f"aurora-feed-{instance}", **options)  # type: ignore[arg-type]
    return commands, feed


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    store: Store
    redis: Redis
    feed_redis: Redis
    read_model: RedisReadModel
    replica: Replica
    broadcaster: Broadcaster
    propagator: Propagator
    feed: ChangeFeed
    reads: Reads
    streams: Streams
    auth: Authenticator
    # Set by sse-starlette when the server begins to exit (and by stop()): streams end then.
    shutdown: anyio.Event = field(default_factory=anyio.Event)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def build(cls, settings: Settings, instance: str) -> Runtime:
        engine = make_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            timeout=settings.db_timeout_seconds,
        )
        store = Store(
            engine,
            limit=settings.db_pool_size + settings.db_max_overflow,
            retries=settings.write_retries,
            timeout=settings.db_timeout_seconds,
        )
        redis, feed_redis = redis_clients(settings, instance)
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
        return cls(
            settings=settings,
            engine=engine,
            store=store,
            redis=redis,
            feed_redis=feed_redis,
            read_model=read_model,
            replica=replica,
            broadcaster=broadcaster,
            propagator=propagator,
            feed=feed,
            reads=Reads(store, read_model, replica, CircuitBreaker()),
            auth=Authenticator(
                store,
                enabled=settings.auth_enabled,
                admin_token=settings.admin_token.get_secret_value()
                if settings.admin_token
                else None,
                cache_seconds=settings.token_cache_seconds,
            ),
            streams=Streams(
                read_model, replica, broadcaster, heartbeat_seconds=settings.sse_heartbeat_seconds
            ),
        )

    async def start(self) -> None:
        settings = self.settings
        if settings.database_backend == "sqlite" or settings.migrate_on_start:
            upgrade_to_head(self.engine)

        async def close_streams_on_exit() -> None:
            await self.shutdown.wait()
            self.broadcaster.close("server shutting down")

        self._tasks = [
            asyncio.create_task(self.feed.run(self._stop), name="change-feed"),
            asyncio.create_task(self.propagator.relay(self._stop), name="outbox-relay"),
            asyncio.create_task(close_streams_on_exit(), name="stream-closer"),
        ]
        with contextlib.suppress(TimeoutError):  # serve anyway: reads fall back to Redis, SQL
            await asyncio.wait_for(self.feed.connected.wait(), settings.replica_wait_seconds)
        if not settings.auth_enabled:
            log.warning(
                "AUTHENTICATION IS DISABLED: anyone who can reach this port can change every "
                "configuration and flag (%s). Set AURORA_AUTH=enabled and AURORA_ADMIN_TOKEN.",
                "embedded default" if settings.auth is None else "AURORA_AUTH=disabled",
            )
        log.info(
            "aurora-config ready: database=%s redis=%s environments=%s replica=%s",
            settings.database_backend,
            "embedded (single process)" if settings.redis_url is None else "server",
            ",".join(settings.environments),
            "live" if self.feed.connected.is_set() else "not yet",
        )

    async def stop(self) -> None:
        self._stop.set()
        self.shutdown.set()
        self.broadcaster.close("server shutting down")
        # The loops hold nothing that cancellation could lose: unapplied changes stay in the
        # outbox, and a new subscription catches up by cursor.
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT_SECONDS)
        await self.redis.aclose()
        await self.feed_redis.aclose()
        self.engine.dispose()
