"""Many writers at once on one item, through the Store's retries, on SQLite and MariaDB.

Without If-Match, a writer that loses the version check runs its whole transaction again on the
fresh row, so no change is lost and each history entry records the true state it replaced: the
history is one unbroken chain, v1 -> v2 -> ... -> vN, and so is the outbox that feeds Redis.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, TypeVar

import pytest

from database.engine import make_engine
from database.models import Configuration, HistoryEntry
from database.repositories import HistoryRepository
from database.uow import UnitOfWork
from service.errors import AlreadyExists
from service.principal import ADMIN, Principal
from service.store import Store
from service.usecases import configs, flags

T = TypeVar("T")

ENV = "production"
WRITERS = 16
DEADLINE = 20.0  # seconds; a run takes well under one, this only bounds a hang


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    engine = make_engine(database_url)  # a pool of 10 + 10 overflow: one connection per slot
    yield Store(engine, limit=20, retries=8, timeout=5.0)
    engine.dispose()


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(DEADLINE):
            return await scenario()

    return asyncio.run(bounded())


def actor(name: str) -> Principal:
    return Principal(name, frozenset({ADMIN}))


def assert_unbroken(history: Sequence[HistoryEntry], fields: Sequence[str]) -> list[HistoryEntry]:
    """Versions 1..n exactly once each; every entry's old state is its predecessor's new state
    (the named fields, then the whole snapshot: version, audit fields and all). Returns the
    entries oldest first."""
    ordered = sorted(history, key=lambda entry: entry.version)
    assert [entry.version for entry in ordered] == list(range(1, len(ordered) + 1))
    assert ordered[0].action == "create"
    assert ordered[0].old_state is None
    for previous, entry in itertools.pairwise(ordered):
        assert entry.action == "update", entry.version
        for field in fields:
            assert entry.old_state[field] == previous.new_state[field], (entry.version, field)
        assert entry.old_state == previous.new_state, entry.version
        assert entry.new_state["version"] == entry.version
    return ordered


def outbox_versions(uow: UnitOfWork, kind: str, key: str) -> list[int]:
    """The versions queued for the read model for one item (no relay runs in these tests)."""
    with uow:
        return sorted(
            entry.event["version"]
            for entry in uow.outbox.pending(1000)
            if entry.event["kind"] == kind and entry.event["key"] == key
        )


def test_parallel_updates_without_if_match_lose_no_change(store: Store) -> None:
    async def scenario() -> None:
        created = await store.run(
            configs.create,
            env=ENV,
            service=None,
            key="counter",
            value=0,
            description=None,
            actor=actor("init"),
        )
        written = await asyncio.gather(
            *(
                store.run(
                    configs.update,
                    created.id,
                    {"config_value": i},
                    if_match=None,
                    actor=actor(f"w{i}"),
                )
                for i in range(1, WRITERS + 1)
            )
        )
        # Every writer committed a version of its own.
        assert sorted(config.version for config in written) == list(range(2, WRITERS + 2))

        history = await store.run(configs.history, created.id, reader=actor("test"))
        ordered = assert_unbroken(history, ["config_value"])
        assert len(ordered) == WRITERS + 1
        assert sorted(entry.actor for entry in ordered[1:]) == sorted(
            f"w{i}" for i in range(1, WRITERS + 1)
        )
        assert sorted(entry.new_state["config_value"] for entry in ordered[1:]) == list(
            range(1, WRITERS + 1)
        )

        final = await store.run(configs.get, created.id, reader=actor("test"))
        assert final.version == WRITERS + 1
        assert final.config_value == ordered[-1].new_state["config_value"]
        assert await store.run(outbox_versions, "config", "counter") == list(range(1, WRITERS + 2))

    run(scenario)


def test_parallel_rollouts_and_toggles_on_one_flag_lose_no_change(store: Store) -> None:
    async def scenario() -> None:
        flag = await store.run(
            flags.create,
            env=ENV,
            key="checkout",
            name="Checkout",
            description=None,
            is_enabled=False,
            rollout_percentage=0,
            actor=actor("init"),
        )
        # Distinct percentages, none 0: every write is a real change, so each adds a version.
        rollouts = [
            store.run(
                flags.set_rollout, ENV, "checkout", 10 + p, if_match=None, actor=actor(f"r{p}")
            )
            for p in range(WRITERS // 2)
        ]
        toggles = [
            store.run(
                flags.toggle, ENV, "checkout", enabled=None, if_match=None, actor=actor(f"t{t}")
            )
            for t in range(WRITERS // 2)
        ]
        await asyncio.gather(*itertools.chain.from_iterable(zip(rollouts, toggles, strict=True)))

        history = await store.run(flags.history, flag.id, reader=actor("test"))
        ordered = assert_unbroken(history, ["rollout_percentage", "is_enabled"])
        assert len(ordered) == WRITERS + 1
        flips = [e for e in ordered[1:] if e.old_state["is_enabled"] != e.new_state["is_enabled"]]
        assert len(flips) == WRITERS // 2  # every toggle flipped what it found

        final = await store.run(flags.get, flag.id, reader=actor("test"))
        assert final.version == WRITERS + 1
        assert final.is_enabled is False  # an even number of flips from off
        assert final.rollout_percentage == ordered[-1].new_state["rollout_percentage"]
        assert final.is_enabled == ordered[-1].new_state["is_enabled"]
        assert await store.run(outbox_versions, "flag", "checkout") == list(range(1, WRITERS + 2))

    run(scenario)


def upsert(
    store: Store, service: str | None, key: str, value: int, who: str
) -> Awaitable[configs.SetResult]:
    """PUT /configurations/key/{key} without If-Match, as the actor `who`."""
    return store.run(
        configs.set_value,
        env=ENV,
        service=service,
        key=key,
        value=value,
        description=None,
        if_match=None,
        actor=actor(who),
    )


def test_parallel_upserts_of_a_new_key_create_it_once(store: Store) -> None:
    upserts = 10

    async def scenario() -> None:
        # Not return_exceptions: any writer failing fails the test.
        results = await asyncio.gather(
            *(upsert(store, "billing", "fresh", i, f"u{i}") for i in range(upserts))
        )
        assert sum(result.created for result in results) == 1
        assert len({result.config.id for result in results}) == 1
        config_id = results[0].config.id

        history = await store.run(configs.history, config_id, reader=actor("test"))
        ordered = assert_unbroken(history, ["config_value"])
        assert [entry.action for entry in ordered] == ["create"] + ["update"] * (upserts - 1)
        creator = next(result for result in results if result.created)
        assert ordered[0].actor == creator.config.created_by
        final = await store.run(configs.get_by_scope, ENV, "billing", "fresh")
        assert (final.id, final.version) == (config_id, upserts)
        assert final.config_value == ordered[-1].new_state["config_value"]

    run(scenario)


def test_parallel_upserts_of_one_key_keep_global_and_service_values_apart(store: Store) -> None:
    async def scenario() -> None:
        results = await asyncio.gather(
            *(
                upsert(store, service, "limit", i, f"{service}{i}")
                for i in range(5)
                for service in (None, "billing")
            )
        )
        by_scope = {result.config.service_name: result.config.id for result in results}
        assert set(by_scope) == {None, "billing"}
        assert len(set(by_scope.values())) == 2
        for service, config_id in by_scope.items():
            ordered = assert_unbroken(
                await store.run(configs.history, config_id, reader=actor("test")), []
            )
            assert len(ordered) == 5
            assert {entry.service_name for entry in ordered} == {service}

    run(scenario)


def test_parallel_creates_of_one_config_let_exactly_one_win(store: Store) -> None:
    creators = 10

    async def scenario() -> None:
        outcomes = await asyncio.gather(
            *(
                store.run(
                    configs.create,
                    env=ENV,
                    service=None,
                    key="once",
                    value=i,
                    description=None,
                    actor=actor(f"c{i}"),
                )
                for i in range(creators)
            ),
            return_exceptions=True,
        )
        winners = [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]
        losers = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        assert len(winners) == 1, outcomes
        assert len(losers) == creators - 1
        assert all(isinstance(loser, AlreadyExists) for loser in losers), losers

        [winner] = winners
        [entry] = await store.run(configs.history, winner.id, reader=actor("test"))
        assert (entry.action, entry.version, entry.actor) == ("create", 1, winner.created_by)
        stored = await store.run(configs.get_by_scope, ENV, None, "once")
        assert (stored.id, stored.config_value) == (winner.id, winner.config_value)

    run(scenario)


def test_parallel_creates_of_one_flag_let_exactly_one_win(store: Store) -> None:
    creators = 10

    async def scenario() -> list[Any]:
        return await asyncio.gather(
            *(
                store.run(
                    flags.create,
                    env=ENV,
                    key="once",
                    name=f"Once {i}",
                    description=None,
                    is_enabled=True,
                    rollout_percentage=i,
                    actor=actor(f"c{i}"),
                )
                for i in range(creators)
            ),
            return_exceptions=True,
        )

    outcomes = run(scenario)
    winners = [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]
    assert len(winners) == 1, outcomes
    assert all(isinstance(o, AlreadyExists) for o in outcomes if o is not winners[0]), outcomes


def test_a_create_racing_a_create_and_delete_never_reuses_a_version(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 9, defect 5: B reads "last version 0" for a key; meanwhile A creates it (v1) and
    deletes it (v2). B's create must not record version 1 again: it would lose to A's tombstone
    v2 in the read model (404 for an item that exists) and history would show v1 twice."""
    reading = threading.Event()
    resume = threading.Event()
    original = HistoryRepository.last_version
    calls = itertools.count()

    def paused(self: HistoryRepository, *args: Any) -> int:
        version = original(self, *args)
        if next(calls) == 0:  # B's first read only
            reading.set()
            assert resume.wait(DEADLINE)
        return version

    monkeypatch.setattr(HistoryRepository, "last_version", paused)

    def create(name: str, value: int) -> Awaitable[Configuration]:
        return store.run(
            configs.create,
            env=ENV,
            service=None,
            key="raced",
            value=value,
            description=None,
            actor=actor(name),
        )

    async def scenario() -> None:
        b = asyncio.ensure_future(create("b", 2))
        assert await asyncio.to_thread(reading.wait, DEADLINE)
        a = await create("a", 1)
        await store.run(configs.delete, a.id, if_match=None, actor=actor("a"))
        resume.set()
        created = await b
        assert created.version == 3  # after A's create (1) and delete (2)
        with store.unit_of_work() as uow:
            versions = sorted(
                entry.version
                for item_id in (a.id, created.id)
                for entry in uow.history.for_item("config", item_id)
            )
        assert versions == [1, 2, 3]

    run(scenario)


def test_parallel_writers_get_dense_sequence_numbers_per_shard(store: Store) -> None:
    """The proof of freshness counts on it: within each shard of an environment's committed
    sequence, parallel writers' changes are numbered 1..n, each number exactly once."""

    async def scenario() -> None:
        for i in range(12):  # created one by one: the race here is between writers of a shard
            await upsert(store, None, f"key{i}", 0, "creator")
        await asyncio.gather(
            *(upsert(store, None, f"key{i % 12}", i + 1, f"w{i}") for i in range(WRITERS * 3))
        )

    run(scenario)
    with store.unit_of_work() as uow:
        rows = [(e.shard, e.sequence) for e in uow.outbox.pending(1000)]
        last, waiting = uow.outbox.committed(ENV)
    assert len(rows) == 12 + WRITERS * 3
    assert sorted(rows) == sorted(waiting)
    for shard, top in last.items():
        assert sorted(n for s, n in rows if s == shard) == list(range(1, top + 1)), shard
