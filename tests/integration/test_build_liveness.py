"""Every environment's replica becomes trusted once its read model is built, however many
environments there are (issue 10: with 20 environments one replica stayed untrusted for ever).

The cause: the rebuild lock's keeper was stopped by cancelling it, and a cancellation can be
lost. redis-py sends a command under `asyncio.wait_for`, which on Python 3.11 returns the reply
and drops a cancellation that arrives just as the send completes (python/cpython#86296). A keeper
cancelled in the middle of extending the lock went on extending it for ever, the build waiting
for it never ended, so the feed never caught its environment up. It took a build long enough for
the keeper to extend the lock at all (many environments building at once) and a cancellation
landing on that extension; `LostCancellations` makes that happen to every build, every time.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from redis.asyncio import Redis

from cache.keys import Keys
from cache.read_model import EnvironmentItems, RedisReadModel
from cache.replica import Replica
from database.engine import make_engine
from service import propagation
from service.propagation import Propagator
from service.store import Store
from tests.backends import REDIS_DB, REDIS_HOST, REDIS_PORT, check_redis, delete_prefix, new_prefix
from tests.backends import eventually as eventually_sync
from tests.conftest import start_app

ENVIRONMENTS = tuple(f"env{n:02d}" for n in range(1, 21))
DEADLINE = 20.0


class LostCancellations:
    """The lock keeper's extension is on its way when the build finishes, and its reply arrives
    after the keeper was cancelled: the cancellation is lost, as in redis-py on Python 3.11."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.extending: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.built: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        extend_lock, rebuild = RedisReadModel.extend_lock, RedisReadModel.rebuild

        async def extending_late(
            model: RedisReadModel, environment: str, token: str, ttl_ms: int
        ) -> bool:
            self.extending[environment].set()

            async def reply() -> bool:
                await self.built[environment].wait()
                return await extend_lock(model, environment, token, ttl_ms)

            pending = asyncio.ensure_future(reply())
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                return await pending  # the reply came all the same: the cancellation is lost

        async def building_while_extending(
            model: RedisReadModel,
            environment: str,
            items: EnvironmentItems,
            *,
            token: str,
            force: bool = False,
        ) -> str | None:
            await self.extending[environment].wait()
            try:
                return await rebuild(model, environment, items, token=token, force=force)
            finally:
                self.built[environment].set()

        monkeypatch.setattr(RedisReadModel, "extend_lock", extending_late)
        monkeypatch.setattr(RedisReadModel, "rebuild", building_while_extending)
        # The keeper extends every 0.2 s instead of 1.7 s: the same race, sooner.
        monkeypatch.setattr(propagation, "REBUILD_LOCK_MS", 600)


@pytest.fixture
def lost_cancellations(monkeypatch: pytest.MonkeyPatch) -> LostCancellations:
    return LostCancellations(monkeypatch)


@pytest.mark.anyio
@pytest.mark.usefixtures("lost_cancellations")
async def test_a_build_ends_and_frees_its_lock_even_if_its_keeper_misses_a_cancellation(
    database_url: str,
) -> None:
    check_redis()
    prefix = new_prefix()
    engine = make_engine(database_url)
    redis = Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)
    model = RedisReadModel(redis, Keys(prefix))
    store = Store(engine, limit=4, retries=4, timeout=5.0)
    propagator = Propagator(store, model, Replica(), wait=2.0, relay_interval=60)
    try:
        # Awaited without a timeout around it: the old code swallowed that timeout's
        # cancellation too (while waiting for its keeper), and went on as if built in time.
        building = asyncio.ensure_future(propagator.ensure_built("production"))
        await asyncio.wait({building}, timeout=DEADLINE)
        assert building.done(), "the build never ended"
        building.result()
        assert await model.epoch("production") is not None
        assert await model.lock_holder("production") is None  # nobody keeps it for ever
        assert sum(propagator.rebuilds.values()) == 1
    finally:
        await redis.aclose()
        engine.dispose()
        delete_prefix(prefix)


@pytest.fixture
def twenty_environments(
    mariadb_url: str, redis_prefix: str, lost_cancellations: LostCancellations
) -> Iterator[TestClient]:
    app = start_app(
        mariadb_url,
        redis_prefix,
        environments=ENVIRONMENTS,
        default_environment=ENVIRONMENTS[0],
        replica_wait_seconds=0.0,  # serve at once: the test watches the replicas come
    )
    with app as client:
        yield client


def untrusted(client: TestClient) -> list[str]:
    """The environments whose replica this instance does not trust (yet), from /status."""
    replica: dict[str, Any] = client.get("/status").json()["read_model"]["replica"]
    return [env for env in ENVIRONMENTS if not replica.get(env, {}).get("trusted")]


@pytest.mark.mariadb
def test_every_environment_of_many_becomes_trusted_once_built(
    twenty_environments: TestClient,
) -> None:
    client = twenty_environments
    eventually_sync(
        lambda: not untrusted(client), within=DEADLINE, what="every replica to be trusted"
    )
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready", ready.json()
    status = client.get("/status").json()["read_model"]
    assert status["rebuilds_by_cause"] == {"missing": len(ENVIRONMENTS)}
