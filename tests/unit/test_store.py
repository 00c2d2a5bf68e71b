"""Store: which database errors are retried (TiDB's optimistic write conflicts among them) and
what a caller sees when the retries run out."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pymysql
import pytest
from sqlalchemy.exc import OperationalError

from database.engine import make_engine
from database.uow import UnitOfWork
from service.errors import SchemaNotReady, Unavailable
from service.store import Store

pytestmark = pytest.mark.anyio


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    engine = make_engine(f"sqlite:///{tmp_path}/s.db")
    yield Store(engine, limit=1, retries=4, timeout=1.0)
    engine.dispose()


def server_error(code: int, message: str) -> OperationalError:
    """What SQLAlchemy raises for a MySQL-protocol server error (TiDB's codes included)."""
    return OperationalError("UPDATE ...", {}, pymysql.err.OperationalError(code, message))


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (9007, "Write conflict, txnStartTS=1, conflictStartTS=2"),  # TiDB, optimistic
        (8022, "Error: KV error safe to retry"),  # TiDB
        (8002, "[tikv:8002]can not retry select for update statement"),  # TiDB
        (1213, "Deadlock found when trying to get lock"),  # MySQL, MariaDB, TiDB
        (1205, "Lock wait timeout exceeded"),
        (1412, "Table definition has changed, please retry transaction"),  # a migration ran
    ],
)
async def test_a_lost_race_is_run_again(store: Store, code: int, message: str) -> None:
    attempts: list[int] = []

    def use_case(_uow: UnitOfWork) -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise server_error(code, message)
        return "committed"

    assert await store.run(use_case) == "committed"
    assert len(attempts) == 3


def always_failing(error: OperationalError) -> tuple[Callable[[UnitOfWork], None], list[int]]:
    """A use case that raises `error` on every attempt, and the list its attempts go into."""
    attempts: list[int] = []

    def use_case(_uow: UnitOfWork) -> None:
        attempts.append(1)
        raise error

    return use_case, attempts


async def test_a_conflict_that_never_ends_is_a_503_after_the_retries(store: Store) -> None:
    use_case, attempts = always_failing(server_error(9007, "Write conflict"))
    with pytest.raises(Unavailable, match="conflicted with concurrent writes 4 times"):
        await store.run(use_case)
    assert len(attempts) == 4  # bounded


async def test_other_server_errors_are_not_retried(store: Store) -> None:
    use_case, attempts = always_failing(server_error(1064, "You have an error in your SQL syntax"))
    with pytest.raises(Unavailable, match="failed to process"):
        await store.run(use_case)
    assert len(attempts) == 1


@pytest.mark.parametrize(
    "error",
    [
        server_error(1146, "Table 'aurora.app_configurations' doesn't exist"),
        server_error(1054, "Unknown column 'revoked_at' in 'field list'"),
        OperationalError("SELECT ...", {}, sqlite3.OperationalError("no such table: api_tokens")),
    ],
)
async def test_a_missing_schema_says_to_migrate_once_without_a_traceback(
    store: Store, error: OperationalError, caplog: pytest.LogCaptureFixture
) -> None:
    """Not migrated (or not to head): a 503 that names the fix, not retried, and no traceback
    per call (readiness logs the state once; issue #9)."""
    use_case, attempts = always_failing(error)
    with pytest.raises(SchemaNotReady, match="python -m service migrate"):
        await store.run(use_case)
    assert len(attempts) == 1
    assert [r for r in caplog.records if r.exc_info] == []
