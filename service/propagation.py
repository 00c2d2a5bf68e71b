"""From a committed change to every instance: immediate apply, outbox relay, rebuilds.

A write commits its change and an outbox row in one transaction (service/usecases/changes.py).
Then `Propagator.write` applies the change to Redis at once (and to this instance's replica, so
the writer reads its own write), waiting at most AURORA_PROPAGATION_WAIT_SECONDS, and reports
whether propagation is complete. Whatever did not make it (Redis down, a timeout, the process
dying between commit and apply) stays in the outbox: every instance runs `relay`, which applies
pending rows in order and deletes them. Applies are compare-and-set by version, so several relays
and the immediate path may apply the same change without harm.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Concatenate, Generic, ParamSpec, TypeVar

from redis.exceptions import RedisError

from cache.read_model import DAMAGED, NOT_BUILT, RedisReadModel
from cache.replica import Replica
from database.uow import Published, UnitOfWork
from service.errors import Unavailable
from service.store import Store
from service.usecases import outbox

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

RELAY_BATCH = 200
REBUILD_LOCK_MS = 120_000
REBUILD_WAIT_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Written(Generic[T]):
    value: T
    propagated: bool  # False: committed, and on its way through the outbox relay


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
        self.rebuilds = 0
        self.outcomes: Counter[str] = Counter()  # complete / pending, for /metrics

    async def write(
        self,
        use_case: Callable[Concatenate[UnitOfWork, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Written[T]:
        """Run a write use case; once committed, propagate its changes (briefly waited for)."""
        value, published = await self.store.run_and_publish(use_case, *args, **kwargs)
        propagated = await self.propagate(published)
        if published:
            self.outcomes["complete" if propagated else "pending"] += 1
        return Written(value, propagated)

    async def propagate(self, published: Sequence[Published]) -> bool:
        if not published:
            return True
        try:
            async with asyncio.timeout(self.wait):
                applied = await self._apply(published)
        except (TimeoutError, RedisError, OSError) as exc:
            log.warning("propagation pending (%s); the relay will apply it", type(exc).__name__)
            applied = None
        if applied is None:
            self._poke.set()
            return False
        try:
            await self.store.run(outbox.forget, applied)
        except Unavailable:
            log.info("applied, but the outbox rows stay until the database answers")
        return True

    async def _apply(self, published: Sequence[Published]) -> list[int] | None:
        """Apply in order; the outbox ids done, or None if the read model is not built (or
        damaged: the relay rebuilds it)."""
        done: list[int] = []
        for outbox_id, event in published:
            revision = await self.read_model.apply(event)
            if revision in (NOT_BUILT, DAMAGED):
                return None
            # STALE (0): a relay applied it first, and the feed may not have brought it here
            # yet. The replica applies by version, so the writer reads its own write either way.
            self.replica.apply_local(event, revision)
            done.append(outbox_id)
        return done

    # -- the relay -----------------------------------------------------------------------

    async def relay(self, stop: asyncio.Event) -> None:
        """Apply pending outbox rows until `stop`: woken by a failed propagation, else polling."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), timeout=self.relay_interval)
            self._poke.clear()
            try:
                while await self.relay_once() >= RELAY_BATCH and not stop.is_set():
                    pass  # a full batch: there may be more, go again at once
            except (RedisError, OSError, Unavailable) as exc:
                log.info("relay paused: %s: %s", type(exc).__name__, exc)
            except Exception:
                # The relay is what makes a pending change reach Redis: it must outlive any
                # surprise. Logged once per failed round; the next round tries again.
                log.exception("relay round failed; retrying")

    async def relay_once(self) -> int:
        """Apply one batch of pending changes; returns how many were pending."""
        pending = await self.store.run(outbox.pending, RELAY_BATCH)
        done: list[int] = []
        for outbox_id, event in pending:
            revision = await self.read_model.apply(event)
            if revision in (NOT_BUILT, DAMAGED):  # DAMAGED retired the epoch: build it again
                await self.ensure_built(event.environment)
                revision = await self.read_model.apply(event)
                if revision in (NOT_BUILT, DAMAGED):
                    break
            done.append(outbox_id)
        if done:
            await self.store.run(outbox.forget, done)
            log.debug("relay applied %d pending changes", len(done))
        return len(pending)

    # -- rebuilds ------------------------------------------------------------------------

    async def ensure_built(self, environment: str) -> None:
        """Build the environment's read model from the database if Redis has none (first
        start, or Redis lost its data). One instance builds, under a Redis lock; the others
        wait for its epoch. Applies are refused while there is no epoch, so none is lost."""
        lock = self._building.setdefault(environment, asyncio.Lock())
        async with lock:
            if await self.read_model.epoch(environment) is not None:
                return
            token = uuid.uuid4().hex
            if await self.read_model.lock(environment, token, REBUILD_LOCK_MS):
                try:
                    await self._rebuild(environment)
                finally:
                    await self.read_model.unlock(environment, token)
                self._poke.set()  # changes refused while there was no epoch
                return
            async with asyncio.timeout(REBUILD_WAIT_SECONDS):
                # Another process is building it: only Redis can tell us when it is done.
                while await self.read_model.epoch(environment) is None:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)

    async def rebuild_lost(self, environment: str, epoch: str) -> None:
        """Redis lost data it had acknowledged under `epoch` (restored from an older snapshot, a
        failover that dropped writes, evicted keys): changes whose outbox rows are gone are
        missing from it. Retire the epoch, so applies wait in the outbox and reads go to SQL,
        and rebuild from the database as on a first start. Only one instance retires it."""
        if await self.read_model.retire(environment, epoch):
            log.warning("read model of %s lost acknowledged changes; rebuilding", environment)
        await self.ensure_built(environment)

    async def _rebuild(self, environment: str) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        items = await self.store.run(outbox.environment_items, environment)
        epoch = await self.read_model.rebuild(
            environment, items.configs, items.flags, tombstones=items.tombstones, force=False
        )
        if epoch is not None:
            self.rebuilds += 1
            log.info(
                "rebuilt the read model of %s: %d configs, %d flags, %d tombstones, epoch %s, "
                "%.3fs",
                environment,
                len(items.configs),
                len(items.flags),
                len(items.tombstones),
                epoch,
                loop.time() - started,
            )
