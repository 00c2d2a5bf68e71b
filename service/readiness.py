"""Readiness: can this instance serve, and how well? The answer of /health/ready.

`assess` is the whole policy, a pure function of the facts (database, schema revision, Redis,
change feed, replica per environment) returning a status and its reasons:

- `ready` (200): everything works.
- `degraded` (200): reads are still served: the database is down but every environment's replica
  is trusted, or Redis is down but the database answers (or an environment's replica is still
  resynchronising, or the schema is newer than this code during a rolling upgrade). Taking every
  instance out of the load balancer during an outage would defeat the read path built for it.
- `unavailable` (503): the schema is missing or older than this code (every call would fail);
  an environment has neither the database nor a trusted replica to read from; or the change feed
  is down while Redis answers, a fault of this instance alone: its streams are refused while
  other instances can serve them.

`Readiness` gathers the facts without blocking the event loop (the database through worker
threads, the schema revision at most once every few seconds) and logs one line per change of
state, so an outage is a handful of lines, not a traceback every two seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import anyio
import anyio.to_thread
from redis.asyncio import Redis
from redis.exceptions import RedisError

from cache.feed import ChangeFeed
from cache.replica import Replica
from database.migrations import SchemaRevision, head_revision, schema_revision
from service.store import Store

log = logging.getLogger(__name__)

Status = Literal["ready", "degraded", "unavailable"]
#: An environment's replica as readiness sees it: `verified` (trusted, and proven against the
#: database by the feed), `trusted` (followed, not proven: the database could not be asked, so
#: it is served as it is), `untrusted` (reads go to Redis or SQL, streams are refused).
ReplicaState = Literal["verified", "trusted", "untrusted"]

REDIS_PING_SECONDS = 1.0
#: How long a schema revision read from the database is reused: at head, and not at head (an
#: operator migrating wants to see `ready` soon after).
SCHEMA_CURRENT_SECONDS = 5.0
SCHEMA_PENDING_SECONDS = 1.0
#: The background check, so state changes are logged even when nothing probes.
CHECK_EVERY_SECONDS = 2.0
MIGRATE = "run `python -m service migrate`"


@dataclass(frozen=True, slots=True)
class Facts:
    database: bool  # answered a query just now
    schema: SchemaRevision | None  # None: not known (the database has not answered)
    redis: bool
    feed_connected: bool
    replicas: Mapping[str, ReplicaState]  # every environment this instance serves


def assess(facts: Facts) -> tuple[Status, tuple[str, ...]]:
    """The readiness policy (see the module docstring); reasons name what is wrong and what
    it means for clients, worst first. Stable texts: a change of reasons is a change of state."""
    if facts.database and facts.schema is not None:
        schema = facts.schema
        if schema.verdict == "missing":
            return "unavailable", (f"the database has no schema (no Alembic revision): {MIGRATE}",)
        if schema.verdict == "behind":
            return "unavailable", (
                f"the database schema is at revision {schema.current}, this version needs "
                f"{schema.head}: {MIGRATE}",
            )
    down: list[str] = []  # 503
    degraded: list[str] = []
    if facts.schema is not None and facts.schema.verdict == "ahead":
        degraded.append(
            f"the database schema is at revision {facts.schema.current}, newer than this "
            f"version's {facts.schema.head} (a rolling upgrade?)"
        )
    untrusted = sorted(env for env, state in facts.replicas.items() if state == "untrusted")
    if not facts.database:
        if untrusted:
            down.append(
                f"the database does not answer and the replica of {', '.join(untrusted)} is not "
                "trusted: nothing can serve their reads"
            )
        else:
            degraded.append(
                "the database does not answer: reads come from the replica (as it is), writes "
                "answer 503"
            )
    if not facts.redis:
        degraded.append(
            "Redis does not answer: reads come from the database, writes answer `pending`, "
            "streams are refused"
        )
    elif not facts.feed_connected:
        down.append(
            "the change feed is not connected though Redis answers: this instance refuses "
            "streams (other instances can serve them)"
        )
    elif untrusted and facts.database:
        degraded.append(
            f"the replica of {', '.join(untrusted)} is not trusted (resynchronising): its reads "
            "go to Redis, its streams are refused"
        )
    if down:
        return "unavailable", (*down, *degraded)
    if degraded:
        return "degraded", tuple(degraded)
    return "ready", ()


@dataclass(frozen=True, slots=True)
class Report:
    """What /health/ready shows: the verdict and each subsystem."""

    status: Status
    reasons: tuple[str, ...]
    database: str  # "ok" or "unavailable: <why>"
    schema: SchemaRevision | None
    redis: str
    feed_connected: bool
    replicas: Mapping[str, ReplicaState]

    @property
    def http_status(self) -> int:
        return 503 if self.status == "unavailable" else 200


async def redis_health(redis: Redis) -> str:
    try:
        async with asyncio.timeout(REDIS_PING_SECONDS):
            await redis.ping()
    except (RedisError, OSError, TimeoutError) as exc:
        return f"unavailable: {type(exc).__name__}"
    return "ok"


def _failure(exc: BaseException) -> str:
    return "unavailable: " + ("timed out" if isinstance(exc, TimeoutError) else type(exc).__name__)


class StateLog:
    """Logs readiness one line per change of state (status or reasons), none while it holds."""

    def __init__(self) -> None:
        self._last: tuple[Status, tuple[str, ...]] | None = None

    def observe(self, status: Status, reasons: tuple[str, ...]) -> None:
        previous, self._last = self._last, (status, reasons)
        if previous == self._last:
            return
        was = "starting" if previous is None else previous[0]
        if status == "ready":
            log.info("readiness: ready (was %s)", was)
        elif status == "degraded":
            log.warning("readiness: degraded, still serving (was %s): %s", was, "; ".join(reasons))
        else:
            log.warning("readiness: NOT READY, 503 (was %s): %s", was, "; ".join(reasons))


class Readiness:
    def __init__(
        self,
        store: Store,
        redis: Redis,
        feed: ChangeFeed,
        replica: Replica,
        environments: Sequence[str],
        *,
        timeout: float,
    ) -> None:
        self.store = store
        self.redis = redis
        self.feed = feed
        self.replica = replica
        self.environments = tuple(environments)
        self.timeout = timeout
        self.head = head_revision()
        self._schema: SchemaRevision | None = None
        self._schema_until = 0.0  # monotonic time the cached revision is good until
        self._schema_lock = asyncio.Lock()
        self.changes = StateLog()

    async def check(self) -> Report:
        """Gather the facts now (the schema revision from the cache when fresh), assess them,
        and log the verdict if it changed."""
        redis = await redis_health(self.redis)
        database = "ok"
        try:
            await self.store.ping()
            schema = await self._schema_revision()
        except Exception as exc:  # any failure to answer is "down", with its reason shown
            database, schema = _failure(exc), None
        trusted = {name for name, copy in self.replica.status().items() if copy["trusted"]}
        replicas: dict[str, ReplicaState] = {
            env: "untrusted"
            if env not in trusted
            else "verified"
            if self.feed.verification(env)["verified"]
            else "trusted"
            for env in self.environments
        }
        facts = Facts(
            database=database == "ok",
            schema=schema,
            redis=redis == "ok",
            feed_connected=self.feed.connected.is_set(),
            replicas=replicas,
        )
        status, reasons = assess(facts)
        self.changes.observe(status, reasons)
        return Report(
            status, reasons, database, schema, redis, facts.feed_connected, facts.replicas
        )

    async def _schema_revision(self) -> SchemaRevision:
        async with self._schema_lock:  # concurrent probes share one query
            if self._schema is None or time.monotonic() >= self._schema_until:
                with anyio.fail_after(self.timeout):
                    self._schema = await anyio.to_thread.run_sync(
                        schema_revision, self.store.engine, abandon_on_cancel=True
                    )
                current = self._schema.verdict == "current"
                self._schema_until = time.monotonic() + (
                    SCHEMA_CURRENT_SECONDS if current else SCHEMA_PENDING_SECONDS
                )
            return self._schema

    async def run(self, stop: asyncio.Event, every: float = CHECK_EVERY_SECONDS) -> None:
        """Check every `every` seconds until `stop`, so changes are logged without probes."""
        while not stop.is_set():
            try:
                await self.check()
            except Exception:  # a bug here must not end the loop; logged, tried again
                log.exception("readiness check failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every)
