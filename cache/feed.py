"""The change feed: one Redis subscription per process, sequenced per environment.

Every message carries its environment's (epoch, revision). The feed hands messages to the replica
and the broadcaster strictly in revision order: a gap (a lost or late message, a reconnect) is
filled from the Redis stream; when the stream cannot fill it, or the epoch changed (the read model
was rebuilt), the replica is re-hydrated from a snapshot and local SSE streams of that environment
are closed so their clients resynchronise by cursor. While the subscription is down, the replica
is untrusted (reads go to Redis) and local streams are closed (clients reconnect elsewhere).

Freshness is proven, not assumed: on every (re)connect and every `verify_every` seconds each
environment's read model is checked against the database (the maintainer's `verify`: the
database's committed sequence against what Redis recorded as applied). A snapshot is trusted only
once that check passed, or could not be made because the database does not answer (the read
model is then served as it is, and `verified` says so). A read model that lost acknowledged
changes, went back in revisions, or has no epoch is rebuilt.

Nothing blocks the feed: building, waiting for another instance's build, and verifying run as one
background job per environment. Meanwhile that environment is untrusted (reads go to Redis or SQL,
its local streams are closed) and every other environment keeps following its changes.

A job is stopped by cancelling it, but a cancellation can be lost: redis-py sends a command under
`asyncio.wait_for`, which on Python 3.11 drops a cancellation that lands as the command completes
(python/cpython#86296), and the job runs on. So cancel() is only a courtesy: a verification acts
on its answer (trusts the replica, records a proof) only while it is still its environment's
current job of the current subscription (`_owns`). One replaced by a newer job, or dropped when
the subscription went (`_lost`), is outdated whenever it ends, and its answer goes nowhere.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from functools import partial
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from cache.broadcaster import Broadcaster
from cache.messages import FeedMessage
from cache.read_model import NotBuilt, RedisReadModel
from cache.replica import Replica
from cache.subscription import keep_running, listen

log = logging.getLogger(__name__)

CHECK_EVERY_SECONDS = 1.0
VERIFY_EVERY_SECONDS = 5.0
BUILD_RETRY_CAP_SECONDS = 30.0
PROVE_SECONDS = 2.0  # how long a stream with a cursor from the future waits for a proof
REPLAY_LIMIT = 5000
JOBS_STOP_SECONDS = 5.0  # how long stopping the feed waits for its jobs to wind down
# The subscription's connection answers a PING every check; silent this long, it is dead (a
# network partition or a dropped NAT entry leaves a socket that neither errs nor delivers).
SILENT_SECONDS = 3.0
# Redis ahead of what the subscription brought for this long: fetch the gap from the stream.
BEHIND_SECONDS = 1.0
PING = "aurora-feed"
REGRESSED = "revision_regressed"  # a cause, as the maintainer counts it
BUILD, VERIFY = "build", "verify"  # the kinds of background job


class Maintainer(Protocol):
    """What keeps the read model whole (service/propagation.py's Propagator)."""

    async def ensure_built(self, environment: str) -> None: ...

    async def rebuild_lost(self, environment: str, epoch: str, cause: str) -> None: ...

    async def verify(self, environment: str) -> tuple[str, str] | None:
        """None if the read model holds every acknowledged change, else (epoch, cause)."""
        ...


class ChangeFeed:
    def __init__(
        self,
        redis: Redis,
        read_model: RedisReadModel,
        replica: Replica,
        broadcaster: Broadcaster,
        environments: Sequence[str],
        *,
        maintainer: Maintainer,
    ) -> None:
        self.redis = redis  # a client of its own: its connection holds the subscription
        self.read_model = read_model
        self.replica = replica
        self.broadcaster = broadcaster
        self.environments = tuple(environments)
        self.maintainer = maintainer
        self._behind_since: dict[str, float] = {}  # when Redis got ahead of the feed
        self.check_every = CHECK_EVERY_SECONDS
        self.verify_every = VERIFY_EVERY_SECONDS
        self.silent_after = SILENT_SECONDS
        self.behind_grace = BEHIND_SECONDS
        self.connected = asyncio.Event()
        self._positions: dict[str, tuple[str, int]] = {}  # last (epoch, revision) handed on
        self._jobs: dict[str, asyncio.Task[None]] = {}  # one background job per environment
        self._job_kind: dict[str, str] = {}  # BUILD or VERIFY
        # The subscription each job was started under: one more every time it is lost.
        self._generation = 0
        self._job_generation: dict[str, int] = {}
        self._done: set[str] = set()  # environments whose build ended: catch up with Redis
        self._verified_at: dict[str, float] = {}  # last successful proof against the database
        self._verify_started: dict[str, float] = {}
        self._proofs: dict[str, tuple[float, bool]] = {}  # the last proof: (begun, passed)
        self._unverifiable: set[str] = set()  # the database could not be asked last time
        self._failure: dict[str, str] = {}  # the last build failure logged, per environment
        self._retry_delay: dict[str, float] = {}
        self._retry_at: dict[str, float] = {}  # no new build before then (backoff)
        self.resyncs = 0

    # -- the loop ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Keep the subscription alive until `stop` is set, reconnecting with jittered backoff."""
        try:
            await keep_running(
                stop,
                partial(self._session, stop),
                what="change feed",
                after_each=self._lost,
                expected=(RedisError, OSError, NotBuilt),
            )
        finally:
            # Awaited, not only cancelled: a job still winding down after the caller closes the
            # Redis clients would open a connection of its own, left open when the loop ends
            # (an unclosed socket at shutdown); and a cancellation can be lost (docstring), so
            # the wait is bounded.
            jobs = list(self._jobs.values())
            for job in jobs:
                job.cancel()
            if jobs:
                await asyncio.wait(jobs, timeout=JOBS_STOP_SECONDS)

    def _lost(self) -> None:
        if self.connected.is_set():
            log.info("change feed disconnected: replica untrusted, local streams closed")
        self.connected.clear()
        self._generation += 1  # no job started before this may trust anything any more
        for environment, job in list(self._jobs.items()):
            if self._job_kind.get(environment) == VERIFY:
                # It must not trust a replica after the subscription went. The cancellation may
                # be lost (see the module's doc): dropped from the tables, the job is outdated
                # however it ends, and the next session proves the environment again.
                job.cancel()
                del self._jobs[environment]
                del self._job_kind[environment]
        self.replica.distrust()
        self.broadcaster.close("this instance lost its change feed")

    async def _session(self, stop: asyncio.Event) -> None:
        async with self.redis.pubsub() as pubsub:
            await pubsub.subscribe(self.read_model.keys.channel)
            # Subscribed first, then caught up: nothing published from here on can be missed.
            # Every environment is proven against the database again: Redis may have come back
            # from a restart, a restore or a failover with less than it had.
            for environment in self.environments:
                await self._catch_up(environment, verify=True)
            self.connected.set()
            log.info("change feed live: %s", self.replica.status())
            async for message, tick in listen(
                pubsub, stop, every=self.check_every, silent_after=self.silent_after, ping=PING
            ):
                if message is not None:
                    await self._deliver(FeedMessage.parse(message["data"]))
                while self._done:
                    await self._catch_up(self._done.pop(), verify=True)
                if tick:
                    await self._check_positions()

    async def _deliver(self, message: FeedMessage) -> None:
        if self._job_kind.get(message.environment) == BUILD:
            return  # being rebuilt: it catches up from Redis when that ends
        position = self._positions.get(message.environment)
        if position is None:
            return  # an environment this instance does not serve (or not built yet)
        epoch, revision = position
        if message.epoch == epoch and message.revision <= revision:
            return  # already handed on (a replayed or duplicate message)
        if message.epoch == epoch and message.revision == revision + 1:
            self._hand_on(message)
        else:
            await self._catch_up(message.environment, verify=message.epoch != epoch)

    def _hand_on(self, message: FeedMessage) -> None:
        """The next message in sequence: to the replica, then to local streams."""
        self._positions[message.environment] = (message.epoch, message.revision)
        self.replica.follow(message)
        self.broadcaster.publish(message)

    # -- catching up ---------------------------------------------------------------------

    async def _catch_up(self, environment: str, *, verify: bool) -> None:
        """Bring the replica and local streams to Redis's current revision: by replaying the
        missed messages when the stream still holds them, else from a snapshot. With `verify`
        (a reconnect, a new epoch) the result is trusted only once proven against the database."""
        if self._job_kind.get(environment) == BUILD:
            return  # its job brings it back when it ends
        position = self._positions.get(environment)
        epoch, revision = await self.read_model.position(environment)
        if epoch is None:
            self._untrust(environment, "its read model is missing; building it")
            if time.monotonic() >= self._retry_at.get(environment, 0.0):
                self._start(environment, BUILD, partial(self._build, environment))
            return
        if position is not None and position[0] == epoch:
            if revision < position[1]:
                # Redis went back in time under the same epoch: it lost what this instance saw.
                log.warning(
                    "read model of %s went back from revision %d to %d; rebuilding",
                    environment,
                    position[1],
                    revision,
                )
                self._untrust(environment, "its read model went back in time")
                self._start(
                    environment, BUILD, partial(self._build, environment, (epoch, REGRESSED))
                )
                return
            missed = await self.read_model.replay(environment, position[1], limit=REPLAY_LIMIT)
            if missed is not None:
                for message in missed:
                    if message.epoch == epoch and message.revision > position[1]:
                        self._hand_on(message)
                if verify:
                    self._start(
                        environment, VERIFY, partial(self._verify, environment, then_trust=True)
                    )
                else:
                    self.replica.trust(environment)
                return
        snapshot = await self.read_model.snapshot(environment)
        self.replica.hydrate(environment, snapshot, trusted=not verify)
        self._positions[environment] = (snapshot.epoch, snapshot.revision)
        self.resyncs += 1
        if position is not None:
            # Local streams may have missed what the snapshot covers: they resynchronise.
            self.broadcaster.close("the read model was rebuilt; resynchronise", environment)
        if verify:
            self._start(environment, VERIFY, partial(self._verify, environment, then_trust=True))

    def _untrust(self, environment: str, why: str) -> None:
        """The environment cannot follow right now: reads go to Redis or SQL, and its SSE
        clients are disconnected (their SDKs show STALE and reconnect)."""
        self._behind_since.pop(environment, None)
        self.replica.distrust(environment)
        self.broadcaster.close(f"{why}; resynchronise", environment)

    # -- background jobs, one per environment ------------------------------------------

    def _start(
        self, environment: str, kind: str, job: Callable[[], Coroutine[Any, Any, None]]
    ) -> None:
        """Run `job` for the environment in the background. A build is never interrupted nor
        run twice; any job replaces a verification still running (its answer is outdated: it
        is cancelled, and should the cancellation be lost, `_owns` tells it it was replaced)."""
        running = self._jobs.get(environment)
        if running is not None:
            if self._job_kind.get(environment) == BUILD:
                return
            running.cancel()

        async def run() -> None:
            try:
                await job()
            finally:
                if self._jobs.get(environment) is task:
                    del self._jobs[environment]
                    if self._job_kind.pop(environment, None) == BUILD:
                        self._done.add(environment)  # catch up with the rebuilt model

        task = asyncio.create_task(run(), name=f"feed-{kind}-{environment}")
        self._jobs[environment] = task
        self._job_kind[environment] = kind
        self._job_generation[environment] = self._generation

    def _owns(self, environment: str) -> bool:
        """Whether the job running now is still the environment's job, started under the
        current subscription: not replaced by a newer job, nor dropped by `_lost`. Only then may
        it act on what it found; checked after its last await, right before it acts."""
        return (
            self._jobs.get(environment) is asyncio.current_task()
            and self._job_generation.get(environment) == self._generation
        )

    async def _build(self, environment: str, lost: tuple[str, str] | None = None) -> None:
        """Build the environment's read model; with `lost` (epoch, cause), rebuild one that lost
        acknowledged changes. A failure is retried after a backoff (see `_failed`)."""
        try:
            if lost is not None:
                await self.maintainer.rebuild_lost(environment, *lost)
            else:
                await self.maintainer.ensure_built(environment)
        except Exception as exc:
            self._failed(environment, "build" if lost is None else "rebuild", exc)
        else:
            self._recovered(environment)

    def _failed(self, environment: str, what: str, exc: Exception) -> None:
        """A build that failed (the database down or not migrated, typically) is tried again
        after a backoff doubling from 0.5 s to 30 s; it is logged when its reason changes, not
        every time."""
        reason = f"{type(exc).__name__}: {exc}"
        delay = min(BUILD_RETRY_CAP_SECONDS, 2 * self._retry_delay.get(environment, 0.25))
        self._retry_delay[environment] = delay
        self._retry_at[environment] = time.monotonic() + delay
        if self._failure.get(environment) != reason:
            self._failure[environment] = reason
            log.warning(
                "cannot %s the read model of %s (%s); retrying with backoff",
                what,
                environment,
                reason,
            )

    def _recovered(self, environment: str) -> None:
        if self._failure.pop(environment, None) is not None:
            log.info("read model of %s built after earlier failures", environment)
        self._retry_delay.pop(environment, None)
        self._retry_at.pop(environment, None)

    async def _verify(self, environment: str, *, then_trust: bool) -> None:
        """Prove the read model against the database. A loss found turns this job into a
        rebuild (the environment is untrusted and its streams closed at once); its catch-up
        afterwards resynchronises from the new epoch. A verification that is no longer its
        environment's job when the database answers (see `_owns`) does nothing with the answer."""
        begun = time.monotonic()
        self._verify_started[environment] = begun
        try:
            loss = await self.maintainer.verify(environment)
        except Exception as exc:
            if not self._owns(environment):
                return  # outdated: its cancellation was lost
            self._proofs[environment] = (begun, False)
            if environment not in self._unverifiable:
                log.warning(
                    "cannot prove the read model of %s against the database (%s: %s); serving "
                    "it as it is",
                    environment,
                    type(exc).__name__,
                    exc,
                )
            self._unverifiable.add(environment)
            loss = None
        else:
            if not self._owns(environment):
                return  # outdated: its cancellation was lost
            self._proofs[environment] = (begun, loss is None)
            if environment in self._unverifiable:
                log.info("read model of %s proven against the database again", environment)
            self._unverifiable.discard(environment)
            if loss is None:
                self._verified_at[environment] = time.monotonic()
        # No await from `_owns` to here: the job is still the current one.
        if loss is not None:
            self._job_kind[environment] = BUILD
            self._untrust(environment, "its read model lost acknowledged changes")
            await self._build(environment, loss)
        elif then_trust and environment in self._positions:
            self.replica.trust(environment)

    async def prove(self, environment: str, within: float = PROVE_SECONDS) -> bool:
        """Prove the environment's read model against the database now: True if a proof begun
        after this call found every acknowledged change in it (one proof is shared by all who
        ask meanwhile). False on a loss (it is being rebuilt), a build under way, a database
        that does not answer, or no answer within `within` seconds."""
        asked = time.monotonic()
        if environment not in self.environments:
            return False
        deadline = asked + within
        while time.monotonic() < deadline:
            proof = self._proofs.get(environment)
            if proof is not None and proof[0] >= asked:
                return proof[1]  # recorded only by a job still current when it was answered
            if self._job_kind.get(environment) == BUILD:
                return False
            job = self._jobs.get(environment)
            if job is None:
                self._start(
                    environment, VERIFY, partial(self._verify, environment, then_trust=False)
                )
                continue
            await asyncio.wait({job}, timeout=max(0.0, deadline - time.monotonic()))
        return False

    def verification(self, environment: str) -> dict[str, object]:
        """For /status: when the read model was last proven, and whether it can be now."""
        at = self._verified_at.get(environment)
        return {
            "verified": environment not in self._unverifiable and at is not None,
            "seconds_since_verified": None if at is None else round(time.monotonic() - at, 3),
            "database_reachable": environment not in self._unverifiable,
            "rebuilding": self._job_kind.get(environment) == BUILD,
        }

    # -- the periodic check ------------------------------------------------------------

    async def _check_positions(self) -> None:
        """Compare each environment's feed in Redis with what this instance handed on, once a
        second: notice Redis losing its data (no epoch, or another one), going back in time
        (a lower revision: restored from an older snapshot, or a failover that dropped writes),
        and messages the subscription did not bring (Redis ahead for too long). Every
        `verify_every` seconds, prove each against the database."""
        now = time.monotonic()
        for environment in self.environments:
            if self._job_kind.get(environment) == BUILD:
                continue
            position = self._positions.get(environment)
            epoch, revision = await self.read_model.position(environment)
            if position is None or epoch != position[0]:
                if position is not None:
                    log.warning("read model of %s lost or replaced; resynchronising", environment)
                    self._untrust(environment, "its read model was replaced")
                await self._catch_up(environment, verify=True)
            elif revision < position[1]:
                await self._catch_up(environment, verify=True)  # went back: it rebuilds
            elif revision > position[1]:
                since = self._behind_since.setdefault(environment, now)
                if now - since >= self.behind_grace:
                    log.warning(
                        "the subscription did not bring revisions %d..%d of %s; replaying them",
                        position[1] + 1,
                        revision,
                        environment,
                    )
                    del self._behind_since[environment]
                    await self._catch_up(environment, verify=False)
            else:
                self._behind_since.pop(environment, None)
                due = now - self._verify_started.get(environment, 0.0) >= self.verify_every
                if due and environment not in self._jobs:
                    self._start(
                        environment, VERIFY, partial(self._verify, environment, then_trust=False)
                    )
