"""The real servers the suite talks to, and a throwaway database per test run.

MariaDB and Redis on 127.0.0.1 (the machine's local services). A missing server skips its tests
locally but fails them when CI=true: CI must never pass by skipping.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pymysql
import pytest

MARIADB_HOST = os.environ.get("AURORA_TEST_MARIADB_HOST", "127.0.0.1")
MARIADB_PORT = int(os.environ.get("AURORA_TEST_MARIADB_PORT", "3306"))
MARIADB_USER = os.environ.get("AURORA_TEST_MARIADB_USER", "root")
MARIADB_PASSWORD = os.environ.get("AURORA_TEST_MARIADB_PASSWORD", "")
IN_CI = os.environ.get("CI", "").lower() == "true"


def unavailable(what: str, why: object) -> None:
    message = f"{what} is not reachable ({why})"
    if IN_CI:
        pytest.fail(f"{message}; CI=true, so this is a failure, not a skip", pytrace=False)
    pytest.skip(message)


def mariadb_url(database: str) -> str:
    return (
        f"mysql+pymysql://{MARIADB_USER}:{MARIADB_PASSWORD}@{MARIADB_HOST}:{MARIADB_PORT}/"
        f"{database}?charset=utf8mb4"
    )


def _admin() -> pymysql.connections.Connection:  # type: ignore[type-arg]
    return pymysql.connect(
        host=MARIADB_HOST,
        port=MARIADB_PORT,
        user=MARIADB_USER,
        password=MARIADB_PASSWORD,
        connect_timeout=3,
        autocommit=True,
    )


@contextmanager
def throwaway_mariadb(label: str = "run") -> Iterator[str]:
    """Create a uniquely named database, yield its URL, drop it afterwards."""
    try:
        admin = _admin()
    except pymysql.MySQLError as exc:
        unavailable(f"MariaDB at {MARIADB_HOST}:{MARIADB_PORT}", exc)
        raise  # unreachable: unavailable() skips or fails
    name = f"aurora_test_{label}_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    try:
        yield mariadb_url(name)
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


REDIS_HOST = os.environ.get("AURORA_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("AURORA_TEST_REDIS_PORT", "6379"))
# A DB index of our own on the shared server; keys also carry a per-test prefix. Never FLUSH*.
REDIS_DB = int(os.environ.get("AURORA_TEST_REDIS_DB", "11"))


def redis_url(host: str = REDIS_HOST, port: int = REDIS_PORT) -> str:
    return f"redis://{host}:{port}/{REDIS_DB}"


def check_redis() -> None:
    import redis  # noqa: PLC0415

    try:
        redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        unavailable(f"Redis at {REDIS_HOST}:{REDIS_PORT}", exc)


def delete_prefix(prefix: str) -> None:
    """Remove every key of one test (SCAN + DEL of its prefix, never FLUSHDB)."""
    import redis  # noqa: PLC0415

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB, socket_connect_timeout=2)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()


def new_prefix() -> str:
    return f"aurora-test-{uuid.uuid4().hex[:12]}:"


def eventually(check: Callable[[], Any], within: float = 10.0, what: str = "condition") -> Any:
    """Poll until `check()` returns something truthy, or fail after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within}s waiting for {what}")
        time.sleep(0.02)


def empty_database(url: str) -> None:
    """Delete every row of every table (the schema stays): a test's own clean slate."""
    from sqlalchemy import text  # noqa: PLC0415

    from database.engine import make_engine  # noqa: PLC0415
    from database.models import Base  # noqa: PLC0415

    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(text(f"DELETE FROM {table.name}"))
    finally:
        engine.dispose()
