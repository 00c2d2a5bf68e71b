"""The proof of freshness and the propagation outcomes, on SQLite and MariaDB with real Redis.

The Propagator is driven directly (no HTTP): the database's committed sequence against what the
Redis read model recorded, the relay's quarantine of a row it cannot apply, an environment
without a read model not blocking the others, `superseded` never reported as `complete`, and the
rebuild lock taken over from a builder that stopped extending it. Faults done with real Redis
processes are in tests/integration/test_redis_faults.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest
from aurora_client.events import ChangeEvent
from redis.asyncio import Redis
from sqlalchemy import text

from cache.keys import Keys
from cache.read_model import SUPERSEDED, RedisReadModel
from cache.replica import Replica
from database.engine import make_engine
from service import propagation
from service.principal import ADMIN, Principal
from service.propagation import Cause, Outcome, Propagator
from service.store import Store
from service.usecases import configs, outbox, segments
from tests.backends import REDIS_DB, REDIS_HOST, REDIS_PORT, check_redis, delete_prefix, new_prefix

ENV = "production"
ADMIN_ACTOR = Principal("tester", frozenset({ADMIN}))
DEADLINE = 20.0
T = TypeVar("T")


class Rig:
    def __init__(self, store: Store, redis: Redis, prefix: str) -> None:
        self.store = store
        self.redis = redis
        self.model = RedisReadModel(redis, Keys(prefix))
        self.replica = Replica()
        self.propagator = self.instance()

    def instance(self) -> Propagator:
        """Another instance's propagator over the same database and Redis."""
        return Propagator(self.store, self.model, self.replica, wait=2.0, relay_interval=60)

    async def set_timeout(self, value: int) -> Any:
        """A write as the API makes it: committed, then propagated."""
        return await self.propagator.write(configs.set_value, **timeout_is(value))

    async def commit_timeout(self, value: int, env: str = ENV) -> Any:
        """Committed only (in the outbox, not applied): (result, published changes)."""
        return await self.store.run_and_publish(configs.set_value, **timeout_is(value, env))

    async def redis_value(self) -> Any:
        _own, shared = await self.model.config_scopes(ENV, None, "timeout")
        return None if shared is None else shared["config_value"]


@pytest.fixture
async def rig(database_url: str) -> AsyncIterator[Rig]:
    check_redis()
    prefix = new_prefix()
    engine = make_engine(database_url)
    redis = Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)
    rig = Rig(Store(engine, limit=4, retries=4, timeout=5.0), redis, prefix)
    await rig.propagator.ensure_built(ENV)
    try:
        yield rig
    finally:
        await redis.aclose()
        engine.dispose()
        delete_prefix(prefix)


pytestmark = pytest.mark.anyio


def timeout_is(value: int, env: str = ENV) -> dict[str, Any]:
    """The arguments of `configs.set_value` that set the global `timeout` to `value`."""
    return {
        "env": env,
        "service": None,
        "key": "timeout",
        "value": value,
        "description": None,
        "if_match": None,
        "actor": ADMIN_ACTOR,
    }


def users_in(users: list[str]) -> list[dict[str, Any]]:
    return [{"context_name": "userId", "operator": "IN", "values": users}]


def segment_is(users: list[str]) -> dict[str, Any]:
    """The arguments of `segments.create` that create the segment `testers` of these users."""
    return {
        "env": ENV,
        "name": "testers",
        "description": None,
        "constraints": users_in(users),
        "actor": ADMIN_ACTOR,
        "max_segments": 1000,
    }


async def segment_values(rig: Rig) -> Any:
    item = await rig.model.segment(ENV, "testers")
    return None if item is None else item["constraints"][0]["values"]


async def within(awaitable: Awaitable[T]) -> T:
    async with asyncio.timeout(DEADLINE):
        return await awaitable


async def test_a_redis_holding_every_change_is_proven_fresh(rig: Rig) -> None:
    for value in (1, 2, 3):
        assert (await rig.set_timeout(value)).outcome is Outcome.COMPLETE
    assert await rig.propagator.verify(ENV) is None


async def test_a_redis_that_came_back_with_older_data_is_found_and_rebuilt(rig: Rig) -> None:
    """Redis returns holding what it had after the first write (its keys as they were then):
    the outbox rows of writes 2..4 are gone, so only the sequence comparison can tell."""
    await rig.set_timeout(1)
    k = rig.model.keys.env(ENV)
    names = [k.epoch, k.revision, k.configs, k.flags, k.versions, k.feed, k.applied, k.ahead]
    saved = {name: await rig.redis.dump(name) for name in names}
    for value in (2, 3, 4):
        assert (await rig.set_timeout(value)).outcome is Outcome.COMPLETE
    for name, dumped in saved.items():
        await rig.redis.delete(name)
        if dumped is not None:
            await rig.redis.restore(name, 0, dumped)
    assert await rig.redis_value() == 1  # the older data, as a restore would bring it

    loss = await within(rig.propagator.verify(ENV))
    assert loss is not None
    epoch, cause = loss
    assert cause == Cause.LOST_WRITES
    await within(rig.propagator.rebuild_lost(ENV, epoch, cause))
    assert await rig.redis_value() == 4
    assert await rig.model.epoch(ENV) not in (None, epoch)
    assert rig.propagator.detections[Cause.LOST_WRITES] == 1
    assert await rig.propagator.verify(ENV) is None


async def test_a_lost_segment_change_is_found_and_rebuilt(rig: Rig) -> None:
    """As above, for a segment (issue 10): its update is committed and was applied, then Redis
    came back without it. The proof covers segment changes like any other, and the rebuild
    brings the segment's new constraints (and its version) back."""
    created = await rig.propagator.write(segments.create, **segment_is(["1"]))
    assert created.outcome is Outcome.COMPLETE
    k = rig.model.keys.env(ENV)
    names = [k.epoch, k.revision, k.segments, k.versions, k.feed, k.applied, k.ahead]
    saved = {name: await rig.redis.dump(name) for name in names}
    changes = {"constraints": users_in(["2"])}
    updated = await rig.propagator.write(
        segments.update, ENV, "testers", changes, if_match=None, actor=ADMIN_ACTOR
    )
    assert updated.outcome is Outcome.COMPLETE
    for name, dumped in saved.items():
        await rig.redis.delete(name)
        if dumped is not None:
            await rig.redis.restore(name, 0, dumped)
    assert await segment_values(rig) == ["1"]  # the update is gone from Redis

    loss = await within(rig.propagator.verify(ENV))
    assert loss is not None
    epoch, cause = loss
    assert cause == Cause.LOST_WRITES
    await within(rig.propagator.rebuild_lost(ENV, epoch, cause))
    assert await segment_values(rig) == ["2"]
    assert (await rig.model.snapshot(ENV)).versions["s|testers"] == 2
    assert await rig.propagator.verify(ENV) is None


async def test_a_deleted_segment_stays_deleted_through_a_rebuild(rig: Rig) -> None:
    await rig.propagator.write(segments.create, **segment_is(["1"]))
    await rig.propagator.write(segments.delete, ENV, "testers", if_match=None, actor=ADMIN_ACTOR)
    await within(rig.propagator.rebuild_lost(ENV, await rig.model.epoch(ENV) or "", Cause.MISSING))
    assert await rig.model.segment(ENV, "testers") is None
    assert (await rig.model.snapshot(ENV)).versions["s|testers"] == 2  # its tombstone
    stale = await rig.model.apply(
        ChangeEvent.from_dict(
            {
                "kind": "segment",
                "op": "upsert",
                "key": "testers",
                "environment": ENV,
                "service_name": None,
                "version": 1,
                "state": {"name": "testers", "constraints": [], "version": 1},
            }
        )
    )
    assert stale == SUPERSEDED  # a late upsert from the outbox does not bring it back


async def test_changes_waiting_in_the_outbox_are_not_counted_as_lost(rig: Rig) -> None:
    await rig.set_timeout(1)
    await rig.commit_timeout(2)
    assert await rig.propagator.verify(ENV) is None
    assert await rig.propagator.relay_once() == 1
    assert await rig.redis_value() == 2
    assert await rig.propagator.verify(ENV) is None


async def test_a_write_that_redis_already_holds_a_newer_version_of_is_superseded(
    rig: Rig,
) -> None:
    """Two committed changes of one item; the later one reaches Redis first. The earlier
    write's answer must not say `complete`: what it wrote is not what readers see."""
    await rig.set_timeout(1)
    results = []
    for value in (2, 3):
        results.append(await rig.commit_timeout(value))
    (_first, first_published), (_second, second_published) = results
    assert await rig.propagator.propagate(second_published) is Outcome.COMPLETE
    assert await rig.propagator.propagate(first_published) is Outcome.SUPERSEDED
    assert await rig.redis_value() == 3
    assert await rig.propagator.verify(ENV) is None  # both are recorded as applied


async def test_an_unreadable_outbox_row_is_quarantined_without_blocking_the_others(
    rig: Rig,
) -> None:
    await rig.commit_timeout(7)
    with rig.store.engine.begin() as conn:  # a row no version of the service could read
        conn.execute(
            text(
                "INSERT INTO change_outbox (environment, event, created_at, sequence) "
                "VALUES (:env, :event, '2000-01-01 00:00:00', 0)"
            ),
            {"env": ENV, "event": '{"kind": "config"}'},
        )
    assert await rig.propagator.relay_once() == 2
    assert await rig.redis_value() == 7  # the good row behind it went through
    assert rig.propagator.quarantined == 1
    assert await rig.store.run(outbox.backlog) == (0, None)
    assert await rig.store.run(outbox.quarantined) == 1
    assert await rig.propagator.relay_once() == 0  # set aside: not tried again


async def test_an_environment_without_a_read_model_does_not_hold_up_the_others(
    rig: Rig,
) -> None:
    for env in ("staging", ENV):
        await rig.commit_timeout(9, env)
    assert await rig.model.epoch("staging") is None  # never built
    await rig.propagator.relay_once()
    assert await rig.redis_value() == 9
    assert (await rig.store.run(outbox.backlog))[0] == 1  # staging's waits for its build


async def test_a_dead_builders_lock_is_taken_over(rig: Rig) -> None:
    k = rig.model.keys.env("staging")
    await rig.redis.set(k.lock, "a builder that died", px=400)  # it will never extend it
    await within(rig.propagator.ensure_built("staging"))
    assert await rig.model.epoch("staging") is not None
    assert rig.propagator.lock_takeovers == 1


async def test_a_slow_builder_keeps_its_lock_and_nobody_builds_twice(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The builder's work outlasts the lock's TTL several times; it extends the lock, so the
    second instance waits instead of taking over, and exactly one rebuild happens."""
    monkeypatch.setattr(propagation, "REBUILD_LOCK_MS", 300)
    original: Callable[..., Awaitable[Any]] = rig.store.run
    slow_reads = asyncio.Event()

    async def slow_run(use_case: Any, *args: Any, **kwargs: Any) -> Any:
        if use_case is outbox.environment_items:
            slow_reads.set()
            await asyncio.sleep(1.0)
        return await original(use_case, *args, **kwargs)

    monkeypatch.setattr(rig.store, "run", slow_run)
    first, second = rig.instance(), rig.instance()
    building = asyncio.ensure_future(first.ensure_built("staging"))
    await within(slow_reads.wait())
    await within(second.ensure_built("staging"))
    await within(building)
    assert sum(first.rebuilds.values()) + sum(second.rebuilds.values()) == 1
    assert second.lock_takeovers == 0


async def test_rows_of_an_unbuilt_environment_never_hide_the_others_behind_them(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Full batches of an environment without a read model (oldest first) used to be fetched
    again and again, in a busy loop, while the rows of the others behind them waited."""
    monkeypatch.setattr(propagation, "RELAY_BATCH", 2)
    for value in (1, 2, 3):
        await rig.commit_timeout(value, "staging")  # staging has no read model: they wait
    await rig.commit_timeout(9)
    await within(rig.propagator.relay_pending(asyncio.Event()))
    assert await rig.redis_value() == 9
    assert (await rig.store.run(outbox.backlog))[0] == 3  # staging's wait for its build
