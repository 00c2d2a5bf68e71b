"""Shared fixtures: the database backends (SQLite and the real MariaDB) and the API client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from database.engine import make_engine
from database.migrations import upgrade_to_head
from service.app import create_app
from service.settings import Settings
from tests.backends import (
    check_redis,
    delete_prefix,
    empty_database,
    new_prefix,
    redis_url,
    throwaway_mariadb,
)


@pytest.fixture(scope="session")
def mariadb_database() -> Iterator[str]:
    """One throwaway MariaDB database per test run (per xdist worker), migrated to head."""
    with throwaway_mariadb() as url:
        engine = make_engine(url)
        upgrade_to_head(engine)
        engine.dispose()
        yield url


@pytest.fixture(scope="session")
def sqlite_database(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("sqlite") / "aurora.db"
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    upgrade_to_head(engine)
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each test that uses this runs twice: on SQLite and on MariaDB, starting from empty tables."""
    url: str = request.getfixturevalue(f"{request.param}_database")
    yield url
    empty_database(url)


@pytest.fixture
def mariadb_url(mariadb_database: str) -> Iterator[str]:
    """The run's MariaDB database, emptied after the test."""
    yield mariadb_database
    empty_database(mariadb_database)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def make_settings(database_url: str, **overrides: object) -> Settings:
    """Authentication is off unless a test asks for it (tests/integration/test_auth.py does)."""
    overrides.setdefault("auth", "disabled")
    return Settings(_env_file=None, database_url=database_url, **overrides)  # type: ignore[call-arg,arg-type]


def start_app(
    database_url: str, prefix: str, redis_at: str | None = None, **extra: Any
) -> TestClient:
    """An instance on the real Redis (or the one at `redis_at`) under `prefix`, quick to notice
    a change (the relay every 0.05 s, a 1 s database deadline; `extra` overrides settings)."""
    settings = make_settings(
        database_url,
        redis_url=redis_at or redis_url(),
        redis_prefix=prefix,
        **({"relay_interval_seconds": 0.05, "db_timeout_seconds": 1.0} | extra),
    )
    return TestClient(create_app(settings), raise_server_exceptions=False)


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """The real local Redis, on the suite's DB index, under a key prefix of this test's own."""
    check_redis()
    prefix = new_prefix()
    yield prefix
    delete_prefix(prefix)


@pytest.fixture
def settings(request: pytest.FixtureRequest, database_url: str) -> Settings:
    """SQLite runs as `make run` does (embedded Redis); MariaDB runs as production does, with
    the real Redis under a prefix of the test's own."""
    if database_url.startswith("sqlite"):
        return make_settings(database_url)
    prefix = request.getfixturevalue("redis_prefix")
    return make_settings(database_url, redis_url=redis_url(), redis_prefix=prefix)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (marked anyio) run on asyncio, as the service does."""
    return "asyncio"
