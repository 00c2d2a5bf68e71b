"""Store: which database errors are retried (TiDB's optimistic write conflicts among them) and
what a caller sees when the retries run out."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pymysql
import pytest
from sqlalchemy.exc import OperationalError

from database.engine import CommitOutcomeUnknown, make_engine
from database.migrations import upgrade_to_head
from database.uow import UnitOfWork
from service.errors import CommitOutcomeUnknown as OutcomeUnknown
from service.errors import SchemaNotReady, Unavailable
from service.principal import ADMIN, Principal
from service.store import Store
from service.usecases import flags

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


async def test_retries_stay_inside_the_deadline(tmp_path: Path) -> None:
    """Each attempt loses a 0.4 s race: 10 attempts would take 4 s, the deadline is 1 s."""
    engine = make_engine(f"sqlite:///{tmp_path}/s.db")
    store = Store(engine, limit=1, retries=10, timeout=1.0)
    attempts: list[int] = []

    def slow_loser(_uow: UnitOfWork) -> None:
        attempts.append(1)
        time.sleep(0.4)
        raise server_error(9007, "Write conflict")

    started = time.monotonic()
    try:
        with pytest.raises(Unavailable, match="conflicted with concurrent writes"):
            await store.run(slow_loser)
    finally:
        engine.dispose()
    assert time.monotonic() - started < 1.0 + 1.0  # the deadline, plus the 1 s
    assert len(attempts) <= 3  # none starts after the deadline


async def test_waiting_for_the_sqlite_writer_counts_against_the_deadline(tmp_path: Path) -> None:
    """The embedded database has one writer: a write queued behind another for longer than the
    deadline is a 503 within it, however many retries are left (SQLite's busy timeout used to
    start again at every attempt)."""
    url = f"sqlite:///{tmp_path}/locked.db"
    engine = make_engine(url, timeout=1.0)
    upgrade_to_head(engine)
    store = Store(engine, limit=1, retries=4, timeout=1.0)
    holder = sqlite3.connect(tmp_path / "locked.db")
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        admin = Principal("admin", frozenset({ADMIN}))
        started = time.monotonic()
        with pytest.raises(Unavailable):
            await store.run(
                flags.create,
                env="production",
                key="beta",
                name="beta",
                description=None,
                is_enabled=True,
                rollout_percentage=100,
                actor=admin,
            )
        assert time.monotonic() - started < 1.0 + 1.0  # the deadline, plus the 1 s
    finally:
        holder.close()
        engine.dispose()


async def test_a_commit_whose_outcome_is_unknown_is_not_run_again(store: Store) -> None:
    """It may have been applied: running it again could apply it twice (a toggle, say)."""
    attempts: list[int] = []

    def lost_during_commit(_uow: UnitOfWork) -> None:
        attempts.append(1)
        raise CommitOutcomeUnknown("Lost connection to MySQL server during query")

    with pytest.raises(OutcomeUnknown, match="may or may not have been applied"):
        await store.run(lost_during_commit)
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
