"""From a committed change to every instance: immediate apply, outbox relay, proof, rebuilds.

A write commits its change and an outbox row in one transaction (service/usecases/changes.py),
numbered in its environment's committed sequence. Then `Propagator.write` applies the change to
Redis at once (and to this instance's replica, so the writer reads its own write), waiting at
most AURORA_PROPAGATION_WAIT_SECONDS, and reports the outcome: `complete`, `superseded` (Redis
already holds a newer version of the item) or `pending`. Whatever did not make it (Redis down, a
timeout, the process dying between commit and apply) stays in the outbox: every instance runs
`relay`, which applies pending rows in order and deletes them. Applies are compare-and-set by
version, so several relays and the immediate path may apply the same change without harm.

`verify` proves the read model holds every acknowledged change: the database's committed
sequence, less what still waits in the outbox, against the sequence numbers Redis recorded as
applied. A Redis that came back with less (an older snapshot, a promoted lagging replica, an
AOF that lost its last second) is rebuilt from the database under a new epoch.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Concatenate, Generic, ParamSpec, TypeVar

from redis.exceptions import RedisError, ResponseError

from cache.read_model import DAMAGED, NOT_BUILT, SUPERSEDED, LostLock, RedisReadModel
from cache.replica import Replica
from database.uow import Published, UnitOfWork
from service.errors import Unavailable
from service.store import Store
from service.usecases import outbox

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

RELAY_BATCH = 200
# The rebuild lock lives this long unless its builder extends it (every third of it): a builder
# that died is taken over within LOCK_TTL + LOCK_POLL (the bound is 10 s).
REBUILD_LOCK_MS = 5_000
LOCK_POLL_SECONDS = 0.1
# How long one ensure_built waits for another instance's build before giving up (the feed then
# tries again on its next check; the environment stays untrusted meanwhile).
REBUILD_WAIT_SECONDS = 120.0


class Outcome(enum.StrEnum):
    """What a write's `X-Aurora-Propagation` says."""

    COMPLETE = "complete"  # in Redis and in this instance's replica
    SUPERSEDED = "superseded"  # committed; Redis already holds a newer version of the item
    PENDING = "pending"  # committed; the outbox relay will apply it


class Cause(enum.StrEnum):
    """Why a read model was (re)built, for logs and /metrics."""

    MISSING = "missing"  # no epoch: first start, or Redis restarted without its data
    LOST_WRITES = "lost_writes"  # Redis lacks changes the database acknowledged
    UNRECORDED = "unrecorded"  # a model from before sequence tracking: nothing is provable
    DATABASE_BEHIND = "database_behind"  # Redis records more changes than the database has
    REVISION_REGRESSED = "revision_regressed"  # the feed's revision went back
    DAMAGED = "damaged"  # the apply script found its counter behind its stream


@dataclass(frozen=True, slots=True)
class Written(Generic[T]):
    value: T
    outcome: Outcome

    @property
    def propagated(self) -> bool:
        return self.outcome is not Outcome.PENDING


class Propagator:
    def __init__(
        self,
        store: Store,
        read_model: RedisReadModel,
        replica: Replica,
        *,
        wait: float,
        relay_interval: float,
    ) -> None:
        self.store = store
        self.read_model = read_model
        self.replica = replica
        self.wait = wait
        self.relay_interval = relay_interval
        self._poke = asyncio.Event()
        self._building: dict[str, asyncio.Lock] = {}
        self.rebuilds: Counter[str] = Counter()  # by Cause, for /metrics
        self.detections: Counter[str] = Counter()  # lost data noticed, by Cause
        self.outcomes: Counter[str] = Counter()  # by Outcome, for /metrics
        self.quarantined = 0  # outbox rows set aside by this instance's relay
        self.lock_takeovers = 0

    async def write(
        self,
        use_case: Callable[Concatenate[UnitOfWork, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Written[T]:
        """Run a write use case; once committed, propagate its changes (briefly waited for)."""
        value, published = await self.store.run_and_publish(use_case, *args, **kwargs)
        outcome = await self.propagate(published)
        if published:
            self.outcomes[outcome] += 1
        return Written(value, outcome)

    async def propagate(self, published: Sequence[Published]) -> Outcome:
        if not published:
            return Outcome.COMPLETE
        try:
            async with asyncio.timeout(self.wait):
                applied = await self._apply(published)
        except (TimeoutError, RedisError, OSError) as exc:
            log.warning("propagation pending (%s); the relay will apply it", type(exc).__name__)
            applied = None
        except Exception:
            # The change is committed: whatever went wrong on the way to Redis (redis-py on
            # uvloop raises RuntimeError for a connection reset mid-command), the answer is
            # `pending`, never a 500 for an acknowledged write. The relay applies it.
            log.exception("propagation failed unexpectedly; the relay will apply it")
            applied = None
        if applied is None:
            self._poke.set()
            return Outcome.PENDING
        try:
            await self.store.run(outbox.forget, [change.outbox_id for change in published])
        except Unavailable:
            log.info("applied, but the outbox rows stay until the database answers")
        return applied

    async def _apply(self, published: Sequence[Published]) -> Outcome | None:
        """Apply in order; the outcome, or None if the read model is not built (or damaged:
        the feed rebuilds it, and the relay applies the rows then)."""
        outcome = Outcome.COMPLETE
        for change in published:
            revision = await self.read_model.apply(change.event, change.sequence, change.shard)
            if revision in (NOT_BUILT, DAMAGED):
                return None
            if revision == SUPERSEDED:
                # A newer version is in Redis already: what this write set is not what readers
                # see, so it is not reported complete.
                outcome = Outcome.SUPERSEDED
                continue
            # STALE (0): a relay applied exactly this version first, and the feed may not have
            # brought it here yet. The replica applies by version: read-your-writes either way.
            self.replica.apply_local(change.event, revision)
        return outcome

    # -- the relay -----------------------------------------------------------------------

    async def relay(self, stop: asyncio.Event) -> None:
        """Apply pending outbox rows until `stop`: woken by a failed propagation, else polling."""
        paused: str | None = None
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), timeout=self.relay_interval)
            self._poke.clear()
            try:
                await self.relay_pending(stop)
            except (RedisError, OSError, Unavailable) as exc:
                reason = f"{type(exc).__name__}: {exc}"
                if reason != paused:  # once per reason, not once per round
                    log.warning("relay paused: %s", reason)
                paused = reason
                continue
            except Exception:
                # The relay is what makes a pending change reach Redis: it must outlive any
                # surprise. Logged once per failed round; the next round tries again.
                log.exception("relay round failed; retrying")
                continue
            if paused is not None:
                log.info("relay resumed")
                paused = None

    async def relay_pending(self, stop: asyncio.Event) -> None:
        """Batch after batch while they come full; an environment found without a read model
        is left out of the batches after (its rows wait for the feed's rebuild), so however
        many rows it has, they never hide the other environments' rows behind them."""
        unbuilt: set[str] = set()
        while await self.relay_once(unbuilt) >= RELAY_BATCH and not stop.is_set():
            pass

    async def relay_once(self, unbuilt: set[str] | None = None) -> int:
        """Apply one batch of pending changes; returns how many rows it fetched.

        An environment whose read model is missing or damaged is skipped (and added to
        `unbuilt`, whose environments are not fetched). A row that cannot be read, or that
        Redis refuses, is quarantined: logged, counted, and no longer in anyone's way."""
        unbuilt = set() if unbuilt is None else unbuilt
        batch = await self.store.run(outbox.pending, RELAY_BATCH, frozenset(unbuilt))
        done: list[int] = []
        bad = list(batch.unreadable)
        for change in batch.changes:
            environment = change.event.environment
            if environment in unbuilt:
                continue  # keep this environment's order: nothing after a refused row
            try:
                revision = await self.read_model.apply(change.event, change.sequence, change.shard)
            except ResponseError as exc:  # the script refused this row's data
                log.error("outbox row %d refused by Redis: %s", change.outbox_id, exc)
                bad.append(change.outbox_id)
                continue
            if revision in (NOT_BUILT, DAMAGED):
                unbuilt.add(environment)
                continue
            done.append(change.outbox_id)
        if done:
            await self.store.run(outbox.forget, done)
            log.debug("relay applied %d pending changes", len(done))
        if bad:
            await self.store.run(outbox.quarantine, bad)
            self.quarantined += len(bad)
            log.error("quarantined %d outbox rows that cannot be applied: %s", len(bad), bad)
        return len(batch.changes) + len(batch.unreadable)

    # -- proof and rebuilds --------------------------------------------------------------

    async def verify(self, environment: str) -> tuple[str, str] | None:
        """Prove the environment's read model holds every change the database acknowledged.
        None if it does (or there is no model yet: it gets built), else (its epoch, the cause):
        the caller untrusts it and calls `rebuild_lost`.

        The database is asked first: whatever it counts as applied (committed, not waiting in
        the outbox) was applied before its outbox row went, so Redis must hold it now. Raises
        Unavailable when the database cannot be asked (the read model is then served as is)."""
        committed, waiting = await self.store.run(outbox.committed, environment)
        applied = await self.read_model.applied(environment)
        if applied.epoch is None:
            return None
        if applied.watermarks is None:
            log.warning("read model of %s records no applied sequence; rebuilding", environment)
            return applied.epoch, Cause.UNRECORDED
        missing = applied.missing(committed, waiting)
        if missing == 0:
            return None
        log.warning(
            "read model of %s: %s (database sequence %s, Redis complete up to %s)",
            environment,
            f"{missing} acknowledged changes missing" if missing > 0 else "ahead of the database",
            committed,
            applied.watermarks,
        )
        return applied.epoch, Cause.DATABASE_BEHIND if missing < 0 else Cause.LOST_WRITES

    async def ensure_built(self, environment: str, cause: str = Cause.MISSING) -> None:
        """Build the environment's read model from the database if Redis has none. One
        instance builds, under a lock it extends while it works; the others poll for the epoch
        and take the lock over when its holder stops extending it (died, or cut off). Applies
        are refused while there is no epoch, so none is lost. Raises TimeoutError after
        REBUILD_WAIT_SECONDS of waiting (the caller tries again later)."""
        lock = self._building.setdefault(environment, asyncio.Lock())
        async with lock:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + REBUILD_WAIT_SECONDS
            waited_on: str | None = None
            while await self.read_model.epoch(environment) is None:
                token = uuid.uuid4().hex
                if await self.read_model.lock(environment, token, REBUILD_LOCK_MS):
                    if waited_on is not None:
                        self.lock_takeovers += 1
                        log.warning(
                            "took over the rebuild of %s from a silent builder", environment
                        )
                    try:
                        await self._build_holding(environment, token, cause)
                    finally:
                        await self.read_model.unlock(environment, token)
                    self._poke.set()  # changes refused while there was no epoch
                    continue
                waited_on = waited_on or await self.read_model.lock_holder(environment)
                if loop.time() >= deadline:
                    raise TimeoutError(f"no read model of {environment} after waiting")
                await asyncio.sleep(LOCK_POLL_SECONDS)

    async def rebuild_lost(self, environment: str, epoch: str, cause: str) -> None:
        """Redis lost data it had acknowledged under `epoch`: changes whose outbox rows are gone
        are missing from it. Retire the epoch, so applies wait in the outbox and reads go to SQL,
        and rebuild from the database as on a first start. Only one instance retires it."""
        if await self.read_model.retire(environment, epoch):
            self.detections[cause] += 1
            log.warning(
                "read model of %s lost acknowledged changes (%s); rebuilding", environment, cause
            )
        await self.ensure_built(environment, cause)

    async def _build_holding(self, environment: str, token: str, cause: str) -> None:
        """Rebuild while holding the lock under `token`, extending it until done.

        The keeper is told to stop by an event it checks around every extension, and awaited:
        never stopped by cancelling it. redis-py sends a command under `asyncio.wait_for`, which
        on Python 3.11 returns the reply and drops a cancellation that arrives as the send
        completes (python/cpython#86296): a keeper cancelled mid-extension then went on
        extending the lock for ever, the build never ended, and its environment stayed untrusted
        (no replica, streams refused) with the lock held against every other instance."""
        finished = asyncio.Event()

        async def keep_lock() -> None:
            while not finished.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(REBUILD_LOCK_MS / 3000):
                        await finished.wait()
                if finished.is_set():
                    return
                try:
                    held = await self.read_model.extend_lock(environment, token, REBUILD_LOCK_MS)
                except (RedisError, OSError) as exc:
                    # The fencing token protects the swap: a lock that lapsed meanwhile makes
                    # the rebuild fail with LostLock instead of overwriting another's.
                    log.warning("cannot extend the rebuild lock of %s (%s)", environment, exc)
                    return
                if not held:
                    log.warning("lost the rebuild lock of %s; another builder has it", environment)
                    return

        keeper = asyncio.create_task(keep_lock(), name=f"rebuild-lock-{environment}")
        try:
            await self._rebuild(environment, token, cause)
        except LostLock:
            log.warning("rebuild of %s discarded: its lock was taken over", environment)
        finally:
            finished.set()
            # Within one extension (bounded by the socket timeout). A cancellation of this
            # build (shutdown) is not swallowed here: the keeper ends by itself on `finished`.
            await asyncio.wait({keeper})
            if not keeper.cancelled():
                keeper.result()  # anything unexpected surfaces, as the build's own error

    async def _rebuild(self, environment: str, token: str, cause: str) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        items = await self.store.run(outbox.environment_items, environment)
        epoch = await self.read_model.rebuild(environment, items, token=token)
        if epoch is not None:
            self.rebuilds[cause] += 1
            log.info(
                "rebuilt the read model of %s (%s): %d configs, %d flags, %d segments, "
                "%d tombstones, sequence %s, epoch %s, %.3fs",
                environment,
                cause,
                len(items.configs),
                len(items.flags),
                len(items.segments),
                len(items.tombstones),
                items.sequence,
                epoch,
                loop.time() - started,
            )
