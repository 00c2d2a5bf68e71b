"""The real servers the suite talks to, and a throwaway database per test run.

MariaDB and Redis on 127.0.0.1 (the machine's local services). A missing server skips its tests
locally but fails them when CI=true: CI must never pass by skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

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
