"""Concurrent writers without If-Match never lose a change or its true old value (issue #3)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from database.engine import make_engine
from service.errors import AlreadyExists
from service.principal import ADMIN, Principal
from service.store import Store
from service.usecases import configs, flags

WRITERS = 16


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    engine = make_engine(database_url, pool_size=WRITERS, max_overflow=4)
    yield Store(engine, limit=WRITERS, retries=30, timeout=10.0)
    engine.dispose()


def actor(name: str) -> Principal:
    return Principal(name, frozenset({ADMIN}))


def chain(history: list[Any], field: str) -> None:
    """Versions 1..n once each, and every change's old value is the previous change's new one."""
    ordered = sorted(history, key=lambda entry: entry.version)
    assert [e.version for e in ordered] == list(range(1, len(ordered) + 1))
    for previous, entry in itertools.pairwise(ordered):
        assert entry.old_state[field] == previous.new_state[field], (
            previous.version,
            entry.version,
        )


def test_parallel_updates_keep_every_change_and_its_true_old_value(store: Store) -> None:
    async def scenario() -> None:
        created = await store.run(
            configs.create,
            env="production",
            service=None,
            key="counter",
            value=-1,
            description=None,
            actor=actor("init"),
        )
        await asyncio.gather(
            *(
                store.run(
                    configs.update,
                    created.id,
                    {"config_value": i},
                    if_match=None,
                    actor=actor(f"w{i}"),
                )
                for i in range(WRITERS)
            )
        )
        history = list(await store.run(configs.history, created.id))
        assert len(history) == WRITERS + 1
        chain(history, "config_value")
        final = await store.run(configs.get, created.id)
        newest = max(history, key=lambda entry: entry.version)
        assert (final.version, final.config_value) == (
            WRITERS + 1,
            newest.new_state["config_value"],
        )
        assert {e.actor for e in history} == {"init"} | {f"w{i}" for i in range(WRITERS)}

    asyncio.run(scenario())


def test_parallel_rollouts_and_toggles_on_one_flag(store: Store) -> None:
    async def scenario() -> None:
        flag = await store.run(
            flags.create,
            env="production",
            key="f",
            name="f",
            description=None,
            is_enabled=False,
            rollout_percentage=0,
            actor=actor("init"),
        )
        writes = [
            store.run(
                flags.set_rollout, "production", "f", p + 1, if_match=None, actor=actor(f"r{p}")
            )
            for p in range(WRITERS // 2)
        ]
        writes += [
            store.run(
                flags.toggle, "production", "f", enabled=None, if_match=None, actor=actor(f"t{t}")
            )
            for t in range(WRITERS // 2)
        ]
        await asyncio.gather(*writes)
        history = list(await store.run(flags.history, flag.id))
        assert len(history) == WRITERS + 1
        chain(history, "rollout_percentage")
        chain(history, "is_enabled")
        # 8 toggles from off: an even number of flips, whatever the order
        assert (await store.run(flags.get, flag.id)).is_enabled is False

    asyncio.run(scenario())


def test_parallel_upserts_of_a_new_key_create_it_once(store: Store) -> None:
    async def scenario() -> None:
        results = await asyncio.gather(
            *(
                store.run(
                    configs.set_value,
                    env="production",
                    service="svc",
                    key="fresh",
                    value=i,
                    description=None,
                    if_match=None,
                    actor=actor(f"u{i}"),
                )
                for i in range(10)
            )
        )
        assert sum(result.created for result in results) == 1
        config_id = results[0].config.id
        assert {r.config.id for r in results} == {config_id}
        history = list(await store.run(configs.history, config_id))
        assert next(e.action for e in sorted(history, key=lambda e: e.version)) == "create"
        assert sum(e.action == "create" for e in history) == 1
        chain(history, "config_value")

    asyncio.run(scenario())


def test_parallel_creates_of_one_key_let_exactly_one_win(store: Store) -> None:
    async def scenario() -> None:
        outcomes = await asyncio.gather(
            *(
                store.run(
                    configs.create,
                    env="production",
                    service=None,
                    key="once",
                    value=i,
                    description=None,
                    actor=actor(f"c{i}"),
                )
                for i in range(8)
            ),
            return_exceptions=True,
        )
        winners = [o for o in outcomes if not isinstance(o, BaseException)]
        assert len(winners) == 1
        assert all(isinstance(o, AlreadyExists) for o in outcomes if o not in winners)

    asyncio.run(scenario())
