"""Everything stateful one process runs, built from Settings: started and stopped as one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import anyio
import anyio.to_thread
from redis.asyncio import Redis
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import RedisError
from sqlalchemy import Engine

from cache.breaker import CircuitBreaker
from cache.broadcaster import Broadcaster
from cache.feed import ChangeFeed
from cache.keys import Keys
from cache.read_model import RedisReadModel
from cache.replica import Replica
from cache.stream import Streams
from cache.tokens import TokenNotices
from database.engine import make_engine
from database.migrations import upgrade_to_head
from service.auth import Authenticator
from service.propagation import Propagator
from service.readiness import Readiness
from service.reads import Reads
from service.settings import Settings
from service.store import Store

log = logging.getLogger(__name__)

STOP_TIMEOUT_SECONDS = 5.0


def redis_clients(settings: Settings, instance: str) -> tuple[Redis, Redis, list[Redis]]:
    """(commands, subscription, others to close): two clients, so the subscription has a
    connection of its own (plus, with Sentinel, the clients that talk to the sentinels).

    Without REDIS_URL both talk to one in-process fakeredis server: single process only.
    """
    if settings.redis_url is None:
        from fakeredis import FakeAsyncRedis, FakeServer  # noqa: PLC0415 - embedded mode only

        server = FakeServer()
        return FakeAsyncRedis(server=server), FakeAsyncRedis(server=server), []
    options: dict[str, Any] = {
        "socket_connect_timeout": 1.0,
        "socket_timeout": 2.0,
        "health_check_interval": 5,
    }
    url = settings.redis_url
    if url.startswith(SENTINEL_SCHEME):
        sentinel = SentinelUrl.parse(url)
        pool = Sentinel(  # type: ignore[no-untyped-call]
            sentinel.nodes, sentinel_kwargs={"password": sentinel.password, **options}
        )

        def master(name: str) -> Redis:
            return pool.master_for(  # type: ignore[no-any-return]
                sentinel.service,
                db=sentinel.db,
                password=sentinel.password,
                client_name=name,
                **options,
            )

        return master(f"aurora-{instance}"), master(f"aurora-feed-{instance}"), pool.sentinels
    commands = Redis.from_url(url, client_name=f"aurora-{instance}", **options)
    feed = Redis.from_url(url, client_name=f"aurora-feed-{instance}", **options)
    return commands, feed, []


SENTINEL_SCHEME = "redis+sentinel://"


@dataclass(frozen=True, slots=True)
class SentinelUrl:
    """`redis+sentinel://[:password@]host:port[,host:port...]/service-name[/db]`: the master of
    `service-name`, found through the sentinels, and followed across failovers."""

    nodes: list[tuple[str, int]]
    service: str
    db: int
    password: str | None

    @classmethod
    def parse(cls, url: str) -> SentinelUrl:
        rest = url.removeprefix(SENTINEL_SCHEME)
        credentials, _, rest = rest.rpartition("@")
        hosts, _, path = rest.partition("/")
        service, _, db = path.partition("/")
        if not hosts or not service:
            raise ValueError("REDIS_URL: redis+sentinel://host:port[,host:port]/service-name[/db]")
        nodes = []
        for node in hosts.split(","):
            host, _, port = node.rpartition(":")
            nodes.append((host or node, int(port) if host else 26379))
        password = unquote(credentials.partition(":")[2]) if credentials else None
        return cls(nodes, unquote(service), int(db or 0), password or None)


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
    readiness: Readiness
    redis_helpers: list[Redis]
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
            # SQLite has one writer: threads of one process racing for it only conflict (and
            # answer 503 after the retries), so the embedded default runs one at a time.
            limit=1 if settings.embedded else settings.db_pool_size + settings.db_max_overflow,
            retries=settings.write_retries,
            timeout=settings.db_timeout_seconds,
        )
        redis, feed_redis, helpers = redis_clients(settings, instance)
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
            maintainer=propagator,
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
                # Revocations pushed through Redis; the subscription has a connection of its
                # own from the subscriptions' client.
                notices=TokenNotices(redis, settings.redis_prefix, subscriber=feed_redis),
                broadcaster=broadcaster,
            ),
            readiness=Readiness(
                store,
                redis,
                feed,
                replica,
                settings.environments,
                timeout=settings.db_timeout_seconds,
            ),
            redis_helpers=helpers,
            streams=Streams(
                read_model,
                replica,
                broadcaster,
                heartbeat_seconds=settings.sse_heartbeat_seconds,
                prove=feed.prove,
            ),
        )

    async def start(self) -> None:
        settings = self.settings
        if settings.database_backend == "sqlite" or settings.migrate_on_start:
            # Under the database's migration lock: instances started together migrate once.
            await anyio.to_thread.run_sync(upgrade_to_head, self.engine)

        async def close_streams_on_exit() -> None:
            await self.shutdown.wait()
            self.broadcaster.close("server shutting down")

        self._tasks = [
            asyncio.create_task(self.feed.run(self._stop), name="change-feed"),
            asyncio.create_task(self.propagator.relay(self._stop), name="outbox-relay"),
            asyncio.create_task(close_streams_on_exit(), name="stream-closer"),
            asyncio.create_task(self.auth.run(self._stop), name="token-confirmer"),
        ]
        for task in self._tasks:
            task.add_done_callback(self._ended)
        with contextlib.suppress(TimeoutError):  # serve anyway: reads fall back to Redis, SQL
            await asyncio.wait_for(self._replicas_trusted(), settings.replica_wait_seconds)
        # After that wait: "not ready" while the feed connects at start would be noise.
        readiness = asyncio.create_task(self.readiness.run(self._stop), name="readiness")
        readiness.add_done_callback(self._ended)
        self._tasks.append(readiness)
        await self._warn_if_redis_may_evict()
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

    async def _replicas_trusted(self) -> None:
        """Until every environment's replica is built, proven and followed (polled: the feed
        works through its environments in the background)."""
        while not self.feed.connected.is_set() or any(  # noqa: ASYNC110 - no event to await
            self.replica.copy(environment) is None for environment in self.settings.environments
        ):
            await asyncio.sleep(0.02)

    async def _warn_if_redis_may_evict(self) -> None:
        """An evicted counter or epoch is noticed and rebuilt, but not an evicted hash of items
        or versions (404s for keys that exist, tombstones forgotten): the read model needs Redis
        to keep its keys. Only an allkeys-* policy under a maxmemory evicts keys without a TTL."""
        if self.settings.redis_url is None:
            return
        try:
            config = await self.redis.config_get("maxmemory*")
        except (RedisError, OSError):
            return  # CONFIG is often disabled on managed Redis: nothing to say then
        # redis-py decodes CONFIG GET into str.
        policy, limit = str(config.get("maxmemory-policy", "")), str(config.get("maxmemory", "0"))
        if policy.startswith("allkeys") and limit not in ("", "0"):
            log.warning(
                "Redis may evict keys (maxmemory %s, policy %s): the read model needs them all. "
                "Use maxmemory-policy noeviction (or volatile-*) for Aurora's Redis.",
                limit,
                policy,
            )

    def _ended(self, task: asyncio.Task[None]) -> None:
        """The loops catch what they can survive: one that dies of an exception is a bug to see."""
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s died", task.get_name(), exc_info=task.exception())

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
        await self.auth.close()
        for client in (self.redis, self.feed_redis, *self.redis_helpers):
            await client.aclose()
        self.engine.dispose()
