"""Fixtures for tests against real server processes on MariaDB and Redis."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from database.engine import make_engine
from tests.backends import redis_url
from tests.e2e.servers import Server, running

pytestmark = pytest.mark.mariadb


@pytest.fixture
def shared_env(mariadb_database: str, redis_prefix: str) -> Iterator[dict[str, str]]:
    """What every instance of one test shares: a database and a Redis prefix."""
    yield {
        "DATABASE_URL": mariadb_database,
        "REDIS_URL": redis_url(),
        "AURORA_REDIS_PREFIX": redis_prefix,
    }
    engine = make_engine(mariadb_database)
    with engine.begin() as conn:
        # Every table a test writes: a segment left behind shows up in the next test's snapshot.
        for table in (
            "change_outbox",
            "config_history",
            "feature_flags",
            "segments",
            "app_configurations",
        ):
            conn.exec_driver_sql(f"DELETE FROM {table}")
    engine.dispose()


@pytest.fixture
def instance(
    shared_env: dict[str, str], tmp_path: Path
) -> Callable[..., AbstractContextManager[Server]]:
    """`with instance(**env) as server:` starts one more server of this test."""
    counter = iter(range(100))

    def start(port: int | None = None, **env: str) -> AbstractContextManager[Server]:
        return running({**shared_env, **env}, tmp_path / f"server-{next(counter)}.log", port)

    return start
