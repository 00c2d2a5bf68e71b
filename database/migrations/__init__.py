"""Alembic migrations, run programmatically (`python -m service migrate`, or at start), and where
a database's schema stands against them.

Migrations take a database lock on MySQL, MariaDB and TiDB (GET_LOCK on the migration's own
connection), so instances started together with AURORA_MIGRATE_ON_START apply them once: the
first holds the lock and migrates, the others wait for it and then find the schema at head.
SQLite needs no lock: it is the single-process (`make run`) backend.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import DBAPIError

HERE = Path(__file__).resolve().parent

#: How long `upgrade_to_head` waits for another process's migration before giving up.
LOCK_WAIT_SECONDS = 120
LOCK_POLL_SECONDS = 0.2
VERSION_TABLE = "alembic_version"  # alembic's default, which env.py keeps
# MySQL error codes meaning the schema lacks something the code uses: 1146 no such table,
# 1054 unknown column.
SCHEMA_MISSING_MYSQL_CODES = frozenset({1054, 1146})
SCHEMA_MISSING_SQLITE = ("no such table", "no such column", "has no column named")


class MigrationLockTimeout(RuntimeError):
    """Another process held the migration lock for longer than the wait."""


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    return config


def _lock_name(connection: Connection) -> str:
    # GET_LOCK names are server-wide: one lock per database, at most 64 characters.
    return f"aurora-migrate:{connection.engine.url.database or ''}"[:64]


def _uses_get_lock(connection: Connection) -> bool:
    return connection.dialect.name in {"mysql", "mariadb"}


def _take_lock(connection: Connection, wait: float) -> None:
    """GET_LOCK, polled: one long GET_LOCK would outlast the connection's read timeout (the
    socket deadline of every query), and the migration holding it may take longer than that."""
    deadline = time.monotonic() + wait
    while True:
        # 0: answer at once (TiDB rounds it up to its minimum, one second).
        got = connection.execute(
            text("SELECT GET_LOCK(:name, 0)"), {"name": _lock_name(connection)}
        ).scalar()
        connection.commit()  # the lock belongs to the session, not to a transaction
        if got == 1:
            return
        if time.monotonic() >= deadline:
            raise MigrationLockTimeout(
                f"another process held the migration lock for over {wait:.0f}s"
            )
        time.sleep(LOCK_POLL_SECONDS)


def upgrade_to_head(engine: Engine, *, lock_wait: float = LOCK_WAIT_SECONDS) -> None:
    """Apply every migration not yet applied, under the migration lock (see the module).
    Blocking: from async code, run it in a worker thread."""
    config = alembic_config()
    with engine.connect() as connection:
        locked = _uses_get_lock(connection)
        if locked:
            _take_lock(connection, lock_wait)
        try:
            with connection.begin():
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        finally:
            if locked and not connection.invalidated:
                name = _lock_name(connection)
                connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name})
                connection.commit()


# -- where the schema stands ------------------------------------------------------------------

SchemaVerdict = Literal["current", "missing", "behind", "ahead"]


@dataclass(frozen=True, slots=True)
class SchemaRevision:
    """The database's Alembic revision against this code's head."""

    current: str | None  # None: no alembic_version (an empty database)
    head: str
    known: bool  # the current revision is one of this code's migrations

    @property
    def verdict(self) -> SchemaVerdict:
        if self.current == self.head:
            return "current"
        if self.current is None:
            return "missing"
        # A revision this code does not know was written by newer code (a rolling upgrade).
        return "behind" if self.known else "ahead"


@cache
def _revisions() -> tuple[str, frozenset[str]]:
    """(head, every revision): read from the migration scripts once per process."""
    scripts = ScriptDirectory.from_config(alembic_config())
    head = scripts.get_current_head()
    if head is None:  # pragma: no cover - the package always ships migrations
        raise RuntimeError("no migrations found")
    return head, frozenset(script.revision for script in scripts.walk_revisions())


def head_revision() -> str:
    return _revisions()[0]


def schema_revision(engine: Engine) -> SchemaRevision:
    """Ask the database which revision it is at (one small query; blocking: run it in a
    worker thread)."""
    head, known = _revisions()
    with engine.connect() as connection:
        # Read directly: alembic's MigrationContext logs two INFO lines per use.
        heads: list[str] = []
        if inspect(connection).has_table(VERSION_TABLE):
            heads = list(
                connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
            )
    current = heads[0] if len(heads) == 1 else (",".join(sorted(heads)) or None)
    return SchemaRevision(current, head, current in known)


def is_schema_missing(exc: BaseException) -> bool:
    """The database lacks a table or column the code uses: not migrated (or not to head)."""
    if not isinstance(exc, DBAPIError):
        return False
    args = getattr(exc.orig, "args", ())
    if args and isinstance(args[0], int):
        return args[0] in SCHEMA_MISSING_MYSQL_CODES
    message = str(exc.orig)
    return any(marker in message for marker in SCHEMA_MISSING_SQLITE)
