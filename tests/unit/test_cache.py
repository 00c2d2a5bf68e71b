"""cache/ in isolation, on fakeredis (with Lua): the read model, replica, broadcaster, breaker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aurora_client.events import ChangeEvent
from fakeredis import FakeAsyncRedis, FakeServer

from cache.breaker import CircuitBreaker
from cache.broadcaster import Broadcaster
from cache.keys import Keys
from cache.messages import FeedMessage
from cache.read_model import (
    DAMAGED,
    NOT_BUILT,
    STALE,
    SUPERSEDED,
    EnvironmentItems,
    LostLock,
    NotBuilt,
    RedisReadModel,
    Tombstone,
)
from cache.replica import Replica
from tests.readmodels import build

ENV = "production"
pytestmark = pytest.mark.anyio


def flag_event(version: int, percentage: int = 50, *, op: str = "upsert") -> ChangeEvent:
    state = (
        None
        if op == "delete"
        else {
            "flag_key": "f",
            "environment": ENV,
            "is_enabled": True,
            "rollout_percentage": percentage,
            "version": version,
        }
    )
    return ChangeEvent("flag", op, "f", ENV, None, version, state)  # type: ignore[arg-type]


def config_event(version: int, value: Any, service: str | None = None) -> ChangeEvent:
    state = {
        "config_key": "k",
        "config_value": value,
        "environment": ENV,
        "service_name": service,
        "version": version,
    }
    return ChangeEvent("config", "upsert", "k", ENV, service, version, state)


@pytest.fixture
async def model() -> AsyncIterator[RedisReadModel]:
    redis = FakeAsyncRedis(server=FakeServer())
    read_model = RedisReadModel(redis, Keys("t:"), feed_length=100)
    await build(read_model, ENV)
    yield read_model
    await redis.aclose()


async def test_apply_is_compare_and_set_by_version(model: RedisReadModel) -> None:
    assert await model.apply(flag_event(2, 20)) == 1
    assert await model.apply(flag_event(1, 10)) == SUPERSEDED  # older: ignored
    assert await model.apply(flag_event(2, 99)) == STALE  # replayed: ignored
    assert (await model.flag(ENV, "f"))["rollout_percentage"] == 20  # type: ignore[index]
    assert await model.apply(flag_event(3, 30)) == 2
    assert await model.revision(ENV) == 2


async def test_a_delete_leaves_a_tombstone_that_older_upserts_cannot_pass(
    model: RedisReadModel,
) -> None:
    await model.apply(flag_event(1))
    await model.apply(flag_event(2, op="delete"))
    assert await model.flag(ENV, "f") is None
    assert await model.apply(flag_event(1)) == SUPERSEDED  # a late upsert does not resurrect it
    assert await model.flag(ENV, "f") is None
    assert await model.apply(flag_event(3)) > 0  # re-created: versions continue
    assert await model.flag(ENV, "f") is not None


async def test_a_rebuild_keeps_tombstones_and_live_versions_above_them(
    model: RedisReadModel,
) -> None:
    recreated = {"flag_key": "g", "environment": ENV, "is_enabled": True, "version": 5}
    await build(
        model,
        ENV,
        flags=[recreated],
        tombstones=[
            Tombstone("flag", None, "f", 2),  # deleted at version 2, not re-created
            Tombstone("flag", None, "g", 4),  # deleted at 4, re-created at 5
            Tombstone("config", "svc", "k", 3),
        ],
        force=True,
    )
    assert await model.apply(flag_event(1)) == SUPERSEDED  # a late upsert does not resurrect it
    assert await model.flag(ENV, "f") is None
    stale_config = config_event(2, "old", service="svc")
    assert await model.apply(stale_config) == SUPERSEDED
    assert await model.config_scopes(ENV, "svc", "k") == (None, None)
    g_event = ChangeEvent("flag", "upsert", "g", ENV, None, 5, recreated | {"version": 5})
    assert await model.apply(g_event) == STALE  # the live version, not the tombstone, counts
    assert await model.apply(flag_event(3)) > 0  # re-created after the tombstone: accepted


async def test_a_replica_hydrated_from_redis_knows_its_tombstones(model: RedisReadModel) -> None:
    """A writer applies its change locally even when Redis found it STALE (read-your-writes);
    if Redis holds a newer delete, the replica must refuse the older upsert as Redis did."""
    await model.apply(flag_event(1))
    await model.apply(flag_event(2, op="delete"))
    replica = Replica()
    replica.hydrate(ENV, await model.snapshot(ENV))
    assert await model.apply(flag_event(1)) == SUPERSEDED
    replica.apply_local(flag_event(1), SUPERSEDED)
    copy = replica.copy(ENV)
    assert copy is not None
    assert "f" not in copy.flags


async def test_scopes_are_separate_fields(model: RedisReadModel) -> None:
    await model.apply(config_event(1, "global"))
    await model.apply(config_event(1, "own", service="svc"))
    own, shared = await model.config_scopes(ENV, "svc", "k")
    assert (own["config_value"], shared["config_value"]) == ("own", "global")  # type: ignore[index]
    own, shared = await model.config_scopes(ENV, "other", "k")
    assert own is None
    own, shared = await model.config_scopes(ENV, None, "k")
    assert own is None


async def test_an_unbuilt_environment_refuses_writes_and_reads() -> None:
    redis = FakeAsyncRedis(server=FakeServer())
    model = RedisReadModel(redis, Keys("t:"))
    assert await model.apply(flag_event(1)) == NOT_BUILT
    with pytest.raises(NotBuilt):
        await model.flag(ENV, "f")
    with pytest.raises(NotBuilt):
        await model.snapshot(ENV)
    await redis.aclose()


async def test_apply_publishes_after_the_data_is_readable(model: RedisReadModel) -> None:
    pubsub = model.redis.pubsub()
    await pubsub.subscribe(model.keys.channel)
    await pubsub.get_message(timeout=1)  # the subscribe confirmation
    await model.apply(flag_event(1, 10))
    async with asyncio.timeout(2):
        while (raw := await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)) is None:
            pass
    message = FeedMessage.parse(raw["data"])
    assert (message.revision, message.event.version) == (1, 1)  # type: ignore[union-attr]
    assert message.epoch == await model.epoch(ENV)
    assert (await model.flag(ENV, "f"))["version"] == 1  # type: ignore[index]
    await pubsub.aclose()


async def test_replay_is_exact_and_refuses_what_it_no_longer_holds(model: RedisReadModel) -> None:
    for version in range(1, 11):
        await model.apply(flag_event(version, version))
    replayed = await model.replay(ENV, 4, limit=100)
    assert [m.revision for m in replayed] == [5, 6, 7, 8, 9, 10]  # type: ignore[union-attr]
    assert await model.replay(ENV, 10, limit=100) == []
    assert await model.replay(ENV, 4, limit=3) is None  # more missed than the caller takes
    for version in range(11, 400):  # past the stream's bound: the oldest are trimmed
        await model.apply(flag_event(version, version % 100))
    assert await model.replay(ENV, 4, limit=1000) is None


async def test_replay_refuses_a_cursor_from_the_future(model: RedisReadModel) -> None:
    """A revision above Redis's means Redis lost what the cursor names: only a snapshot is right,
    not an empty replay that would make the stream skip every change up to that revision."""
    await model.apply(flag_event(1))
    assert await model.replay(ENV, 1, limit=100) == []
    assert await model.replay(ENV, 6, limit=100) is None


async def test_a_damaged_model_refuses_the_apply_before_writing_anything(
    model: RedisReadModel,
) -> None:
    """The revision counter lost under a live epoch (evicted, a partial restore): XADD would fail
    half-way through the script, after the data had changed. The script checks first."""
    await model.apply(flag_event(1, 10))
    await model.redis.delete(model.keys.env(ENV).revision)
    pubsub = model.redis.pubsub()
    await pubsub.subscribe(model.keys.channel)
    await pubsub.get_message(timeout=1)  # the subscribe confirmation
    assert await model.apply(flag_event(2, 20)) == DAMAGED
    held = await model.redis.hget(model.keys.env(ENV).flags, "f")
    assert held is not None
    assert b'"rollout_percentage":10' in held  # nothing written
    assert await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2) is None
    await pubsub.aclose()
    assert await model.epoch(ENV) is None  # retired in the same step: applies wait, reads go to SQL
    assert await model.apply(flag_event(2, 20)) == NOT_BUILT  # waits in the outbox meanwhile


async def test_an_epoch_is_retired_only_if_it_is_still_the_one_judged(
    model: RedisReadModel,
) -> None:
    epoch = await model.epoch(ENV)
    assert epoch is not None
    assert await model.retire(ENV, "another epoch") is False
    assert await model.epoch(ENV) == epoch
    assert await model.retire(ENV, epoch) is True
    assert await model.epoch(ENV) is None


async def test_rebuild_swaps_in_a_new_epoch_atomically(model: RedisReadModel) -> None:
    first = await model.epoch(ENV)
    await model.apply(flag_event(5))
    item = {
        "flag_key": "g",
        "environment": ENV,
        "is_enabled": False,
        "rollout_percentage": 0,
        "version": 7,
    }
    assert await build(model, ENV, flags=[item]) is None  # already built: refused
    second = await build(model, ENV, flags=[item], force=True)
    assert second not in {None, first}
    snapshot = await model.snapshot(ENV)
    assert [f["flag_key"] for f in snapshot.flags] == ["g"]
    assert snapshot.epoch == second
    assert await model.replay(ENV, 0, limit=100) is None  # the old epoch's feed is gone
    assert await model.replay(ENV, snapshot.revision, limit=100) == []  # nothing since


def message(revision: int, event: ChangeEvent | None, epoch: str = "e1") -> FeedMessage:
    import json  # noqa: PLC0415

    raw = {
        "environment": ENV,
        "epoch": epoch,
        "revision": revision,
        "event": event.to_dict() if event else None,
    }
    return FeedMessage.parse(json.dumps(raw))


def test_replica_follows_in_order_and_distrusts_a_gap() -> None:
    from cache.read_model import Snapshot  # noqa: PLC0415

    replica = Replica()
    replica.hydrate(ENV, Snapshot("e1", 3, [], []))
    assert replica.follow(message(4, flag_event(1, 10)))
    assert replica.copy(ENV).flags["f"]["rollout_percentage"] == 10  # type: ignore[union-attr]
    assert replica.follow(message(4, flag_event(1, 10)))  # a duplicate is harmless
    assert not replica.follow(message(6, flag_event(3, 30)))  # 5 is missing
    assert replica.copy(ENV) is None
    replica.hydrate(ENV, Snapshot("e1", 6, [], []))
    assert not replica.follow(message(7, flag_event(4), epoch="e2"))  # another epoch
    assert replica.copy(ENV) is None


def test_local_writes_apply_by_version_and_advance_only_in_order() -> None:
    from cache.read_model import Snapshot  # noqa: PLC0415

    replica = Replica()
    replica.hydrate(ENV, Snapshot("e1", 3, [], []))
    replica.apply_local(flag_event(2, 20), revision=5)  # 4 has not arrived yet
    assert replica.position(ENV) == ("e1", 3)
    assert replica.follow(message(4, flag_event(1, 10)))  # older version: item unchanged
    assert replica.copy(ENV).flags["f"]["rollout_percentage"] == 20  # type: ignore[union-attr]
    assert replica.follow(message(5, flag_event(2, 20)))
    assert replica.position(ENV) == ("e1", 5)


async def test_a_subscriber_that_falls_behind_is_dropped_not_buffered() -> None:
    broadcaster = Broadcaster(capacity=10)
    slow = broadcaster.subscribe(ENV, None)
    for revision in range(1, 12):
        broadcaster.publish(message(revision, flag_event(revision)))
    assert slow.closed == "too slow"
    assert slow.queue.get_nowait() is None  # woken to end its stream; the backlog is freed
    assert broadcaster.counts() == {}
    assert broadcaster.dropped == 1


def test_subscribers_get_flags_globals_and_their_own_service_only() -> None:
    broadcaster = Broadcaster()
    billing = broadcaster.subscribe(ENV, "billing")
    broadcaster.publish(message(1, config_event(1, 1, service="auth")))
    broadcaster.publish(message(2, config_event(1, 1, service="billing")))
    broadcaster.publish(message(3, config_event(1, 1)))
    broadcaster.publish(message(4, flag_event(1)))
    got = [billing.queue.get_nowait().revision for _ in range(billing.queue.qsize())]  # type: ignore[union-attr]
    assert got == [2, 3, 4]


def test_breaker_opens_after_failures_and_probes_after_cooldown() -> None:
    breaker = CircuitBreaker(threshold=2, cooldown=0.05)
    assert breaker.allows()
    breaker.failed()
    assert breaker.allows()
    breaker.failed()
    assert breaker.state == "open"
    assert not breaker.allows()
    time.sleep(0.06)
    assert breaker.allows()  # one probe
    assert not breaker.allows()  # the others keep skipping Redis
    breaker.succeeded()
    assert breaker.state == "closed"
    assert breaker.allows()


async def test_a_mailbox_waits_for_the_next_message_or_times_out() -> None:
    broadcaster = Broadcaster()
    sub = broadcaster.subscribe(ENV, None)
    with pytest.raises(TimeoutError):
        await sub.queue.get(0.01)  # idle: the stream sends a heartbeat instead
    getting = asyncio.ensure_future(sub.queue.get(5))
    await asyncio.sleep(0)
    broadcaster.publish(message(1, flag_event(1)))
    assert (await getting).revision == 1  # type: ignore[union-attr]
    assert sub.queue.empty()
    sub.close("shutdown")
    assert await sub.queue.get(5) is None


# -- the proof of freshness: which committed changes the read model holds (issue 9) ----------


async def test_applied_sequence_numbers_advance_a_watermark_even_out_of_order(
    model: RedisReadModel,
) -> None:
    """Two writers commit 1 and 2 in shard 3; 2 reaches Redis first. Until 1 arrives the
    watermark stays at 0 and 2 is kept 'ahead'; then both are below it. Stale and superseded
    applies count too: the change is in Redis either way. Shards are independent."""
    assert (await model.applied(ENV)).watermarks == {}
    await model.apply(flag_event(2, 20), 2, 3)
    applied = await model.applied(ENV)
    assert (applied.watermarks, applied.ahead) == ({}, frozenset({(3, 2)}))
    assert await model.apply(flag_event(1, 10), 1, 3) == SUPERSEDED
    applied = await model.applied(ENV)
    assert (applied.watermarks, applied.ahead) == ({3: 2}, frozenset())
    assert await model.apply(flag_event(2, 20), 2, 3) == STALE  # a relay's duplicate: no harm
    await model.apply(config_event(1, "x"), 1, 5)
    assert (await model.applied(ENV)).watermarks == {3: 2, 5: 1}


async def test_missing_counts_acknowledged_changes_neither_in_redis_nor_waiting(
    model: RedisReadModel,
) -> None:
    for sequence, version in ((1, 1), (2, 2), (4, 3)):
        await model.apply(flag_event(version), sequence, 0)
    applied = await model.applied(ENV)
    assert (applied.watermarks, applied.ahead) == ({0: 2}, frozenset({(0, 4)}))
    assert applied.missing({0: 4}, waiting=[(0, 3)]) == 0  # 3 is in the outbox: on its way
    assert applied.missing({0: 4}, waiting=[]) == 1  # 3 left the outbox, so Redis had it: lost
    assert applied.missing({0: 6}, waiting=[(0, 5)]) == 2  # 3 and 6
    assert applied.missing({0: 4, 1: 2}, waiting=[(0, 3)]) == 2  # shard 1 never arrived
    assert applied.missing({0: 1}, waiting=[]) == -1  # Redis records more than the database


async def test_a_rebuild_records_the_sequence_it_was_read_at(model: RedisReadModel) -> None:
    await model.apply(flag_event(1), 7, 2)  # ahead of a watermark of 0
    await build(model, ENV, sequence={2: 41, 9: 3}, force=True)
    applied = await model.applied(ENV)
    assert (applied.watermarks, applied.ahead) == ({2: 41, 9: 3}, frozenset())
    await model.apply(flag_event(5), 42, 2)
    assert (await model.applied(ENV)).watermarks == {2: 42, 9: 3}


async def test_a_model_built_before_sequences_were_recorded_proves_nothing() -> None:
    redis = FakeAsyncRedis(server=FakeServer())
    model = RedisReadModel(redis, Keys("t:"))
    await build(model, ENV)
    await redis.delete(model.keys.env(ENV).applied)  # as an older version of the service left it
    await model.apply(flag_event(1), 1)
    assert (await model.applied(ENV)).watermarks is None  # not invented by the apply either
    await redis.aclose()


async def test_a_builder_that_lost_its_lock_swaps_nothing_in(model: RedisReadModel) -> None:
    """A builder stalled past its lock's TTL; another took the lock over. The first one's
    staged data must not replace the second one's work (the fencing token)."""
    await model.retire(ENV, await model.epoch(ENV) or "")
    assert await model.lock(ENV, "first", 10_000)
    await model.redis.delete(model.keys.env(ENV).lock)  # its TTL ran out
    assert await model.lock(ENV, "second", 10_000)
    with pytest.raises(LostLock):
        await model.rebuild(
            ENV, EnvironmentItems([], [{"flag_key": "f", "version": 1}], []), token="first"
        )
    assert await model.epoch(ENV) is None  # nothing swapped in
    staged = await model.redis.keys("t:{production}:*staging*")
    assert staged == []  # and its staging keys are gone
    assert await model.extend_lock(ENV, "first", 10_000) is False  # cannot extend another's
    await model.unlock(ENV, "first")  # nor release it
    assert await model.lock_holder(ENV) == "second"
    epoch = await model.rebuild(ENV, EnvironmentItems([], [], []), token="second")
    assert epoch is not None


# -- segments: a third kind of item through the read model and the replica (issue 10) -------


def segment_event(version: int, values: list[str] | None = None, name: str = "beta") -> ChangeEvent:
    state = (
        None
        if values is None
        else {
            "name": name,
            "environment": ENV,
            "description": None,
            "constraints": [{"context_name": "userId", "operator": "IN", "values": values}],
            "version": version,
        }
    )
    return ChangeEvent.from_dict(
        {
            "kind": "segment",
            "op": "delete" if values is None else "upsert",
            "key": name,
            "environment": ENV,
            "service_name": None,
            "version": version,
            "state": state,
        }
    )


async def test_a_segment_is_applied_by_version_with_tombstones_and_sequence_numbers(
    model: RedisReadModel,
) -> None:
    """The same Lua apply as configs and flags: compare-and-set by version, a delete keeps its
    version, each applied change bumps the revision and is recorded for the proof."""
    assert await model.apply(segment_event(2, ["1"]), 1, 4) == 1
    assert await model.apply(segment_event(1, ["old"]), 2, 4) == SUPERSEDED
    assert await model.apply(segment_event(2, ["1"]), 1, 4) == STALE
    assert (await model.segment(ENV, "beta"))["constraints"][0]["values"] == ["1"]  # type: ignore[index]
    assert await model.apply(segment_event(3), 3, 4) == 2  # deleted
    assert await model.segment(ENV, "beta") is None
    assert await model.apply(segment_event(2, ["1"]), 4, 4) == SUPERSEDED  # no resurrection
    assert await model.segment(ENV, "beta") is None
    assert await model.revision(ENV) == 2
    assert (await model.applied(ENV)).watermarks == {4: 4}
    replayed = await model.replay(ENV, 0, limit=10)
    assert [(m.event.kind, m.event.op) for m in replayed or [] if m.event] == [
        ("segment", "upsert"),
        ("segment", "delete"),
    ]


async def test_a_segment_and_a_flag_of_the_same_name_are_separate_items(
    model: RedisReadModel,
) -> None:
    await model.apply(segment_event(5, ["1"], name="f"))
    assert await model.apply(flag_event(1)) == 2  # not compared with the segment's version 5
    assert (await model.flag(ENV, "f"))["version"] == 1  # type: ignore[index]
    assert (await model.segment(ENV, "f"))["version"] == 5  # type: ignore[index]


async def test_a_snapshot_and_a_rebuild_carry_segments_and_their_tombstones(
    model: RedisReadModel,
) -> None:
    await model.apply(segment_event(1, ["1"], name="gone"))
    snapshot = await model.snapshot(ENV)
    assert [s["name"] for s in snapshot.segments] == ["gone"]
    live = segment_event(4, ["7"], name="beta").state
    await build(
        model,
        ENV,
        segments=[live] if live else [],
        tombstones=[Tombstone("segment", None, "gone", 2)],
        force=True,
    )
    snapshot = await model.snapshot(ENV)
    assert [s["name"] for s in snapshot.segments] == ["beta"]
    assert snapshot.versions == {"s|beta": 4, "s|gone": 2}
    assert await model.apply(segment_event(1, ["1"], name="gone")) == SUPERSEDED
    assert await model.apply(segment_event(3, ["x"], name="beta")) == SUPERSEDED
    assert await model.targeting(ENV) == ([], [live])


async def test_a_rebuild_without_segments_drops_the_old_ones(model: RedisReadModel) -> None:
    await model.apply(segment_event(1, ["1"]))
    await build(model, ENV, force=True)
    assert (await model.snapshot(ENV)).segments == []
    assert await model.segment(ENV, "beta") is None


async def test_a_builder_that_lost_its_lock_swaps_no_segments_in(model: RedisReadModel) -> None:
    await model.apply(segment_event(1, ["kept"]))
    assert await model.lock(ENV, "second", 10_000)
    with pytest.raises(LostLock):
        await model.rebuild(
            ENV,
            EnvironmentItems([], [], [], segments=[segment_event(9, ["staged"]).state or {}]),
            token="first",
            force=True,
        )
    assert (await model.segment(ENV, "beta"))["version"] == 1  # type: ignore[index]
    assert await model.redis.keys("t:{production}:*staging*") == []


def test_the_replica_follows_segment_changes_by_version() -> None:
    from cache.read_model import Snapshot  # noqa: PLC0415

    replica = Replica()
    replica.hydrate(ENV, Snapshot("e1", 0, [], [], segments=[segment_event(1, ["1"]).state or {}]))
    copy = replica.copy(ENV)
    assert copy is not None
    assert copy.segments["beta"]["version"] == 1
    assert "beta" in copy.targets.segments  # compiled with the snapshot
    assert replica.follow(message(1, segment_event(2, ["2"])))
    assert copy.segments["beta"]["constraints"][0]["values"] == ["2"]
    replica.apply_local(segment_event(1, ["old"]), revision=0)  # older: ignored
    assert copy.segments["beta"]["version"] == 2
    assert replica.follow(message(2, segment_event(3)))
    assert "beta" not in copy.segments
    assert "beta" not in copy.targets.segments
    assert replica.status()[ENV]["segments"] == 0


def test_subscribers_of_any_service_get_segment_changes() -> None:
    broadcaster = Broadcaster()
    billing = broadcaster.subscribe(ENV, "billing")
    broadcaster.publish(message(1, segment_event(1, ["1"])))
    got = billing.queue.get_nowait()
    assert got is not None
    assert got.event is not None
    assert got.event.kind == "segment"


# -- keys are any Unicode without control characters, "|" included (issue 10) ----------------

UNICODE_KEYS = ["Hellø_Wørld", "🚀-launch", "a|b", "|b", "a|"]


def named_flag(key: str, version: int = 1, percentage: int = 100) -> ChangeEvent:
    state = {
        "flag_key": key,
        "environment": ENV,
        "is_enabled": True,
        "rollout_percentage": percentage,
        "version": version,
    }
    return ChangeEvent("flag", "upsert", key, ENV, None, version, state)


async def test_unicode_and_separator_keys_are_distinct_fields_through_apply_and_snapshot(
    model: RedisReadModel,
) -> None:
    """Fields hold keys verbatim: a flag "a|b" is neither the flag "a" nor the configuration
    "b" of the service "a", and none of their versions is compared with another's."""
    for number, key in enumerate(UNICODE_KEYS, start=1):
        assert await model.apply(named_flag(key, version=number)) == number
    await model.apply(config_event(1, "config"))  # key "k", global
    await model.apply(named_flag("a", version=1))
    for number, key in enumerate(UNICODE_KEYS, start=1):
        item = await model.flag(ENV, key)
        assert item is not None
        assert (item["flag_key"], item["version"]) == (key, number)
    snapshot = await model.snapshot(ENV)
    assert sorted(f["flag_key"] for f in snapshot.flags) == sorted([*UNICODE_KEYS, "a"])
    assert snapshot.versions["f|a|b"] == 3
    assert snapshot.versions["f|a"] == 1
    replayed = await model.replay(ENV, 0, limit=100)
    assert [m.event.key for m in replayed or [] if m.event][: len(UNICODE_KEYS)] == UNICODE_KEYS
    replica = Replica()
    replica.hydrate(ENV, snapshot)
    copy = replica.copy(ENV)
    assert copy is not None
    assert sorted(copy.flags) == sorted([*UNICODE_KEYS, "a"])
    assert sorted(copy.targets.plain) == sorted(copy.flags)


async def test_a_rebuild_keeps_unicode_keys_and_their_tombstones(model: RedisReadModel) -> None:
    await build(
        model,
        ENV,
        flags=[named_flag("Hellø_Wørld", 4).state or {}],
        tombstones=[Tombstone("flag", None, "a|b", 6), Tombstone("config", "a", "b", 2)],
        force=True,
    )
    assert await model.apply(named_flag("a|b", 5)) == SUPERSEDED
    assert await model.apply(named_flag("Hellø_Wørld", 4)) == STALE
    assert await model.apply(config_event(1, "x", service="a")) > 0  # key "k": not "a|b"
    assert (await model.snapshot(ENV)).versions == {
        "f|Hellø_Wørld": 4,
        "f|a|b": 6,
        "c|a|b": 2,
        "c|a|k": 1,
    }
