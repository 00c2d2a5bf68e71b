"""Engine construction for each supported backend, and the transient-error rules.

Every engine keeps to the deadline of the call using it (database/deadline.py, issue #9).
"""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from database import deadline
from database.deadline import DeadlineExceeded

# MySQL/MariaDB/TiDB error codes that mean "run the transaction again":
# 1205 lock wait timeout, 1213 deadlock, 8002/8022 TiDB retry errors, 9007 TiDB write conflict,
# 1412 table definition changed (a migration ran DDL during the transaction).
RETRYABLE_MYSQL_CODES = frozenset({1205, 1213, 1412, 8002, 8022, 9007})
# Codes that mean the server is unreachable or went away: 2002/2003/2005 cannot connect,
# 2006/2013 gone away / lost connection, 1040 too many connections, 1053 shutdown in progress.
UNAVAILABLE_MYSQL_CODES = frozenset({1040, 1053, 2002, 2003, 2005, 2006, 2013})
# The connection went away with a command sent and its answer not read (or not all sent).
LOST_MYSQL_CODES = frozenset({2006, 2013})


class ConcurrentWrite(Exception):
    """Raised by a use case when a concurrent writer made its transaction moot; run it again."""


class CommitOutcomeUnknown(Exception):
    """The connection was lost during COMMIT: the change may or may not have been applied.
    Never run such a transaction again blindly (it may have been applied)."""


def make_engine(
    url: str, *, pool_size: int = 10, max_overflow: int = 10, timeout: float = 5.0
) -> Engine:
    """`timeout` bounds waits outside a call's deadline (migrations, the CLI); within one
    (`database.deadline.deadline`, opened by the Store) the deadline bounds them all."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": timeout},
            pool_size=pool_size,
            max_overflow=max_overflow,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        deadline.install(engine)
        return engine
    if parsed.get_backend_name() in {"mysql", "mariadb"}:
        if "charset" not in parsed.query:
            parsed = parsed.update_query_dict({"charset": "utf8mb4"})
        engine = create_engine(
            parsed,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=timeout,
            # No pool_pre_ping: its wait is the fixed read timeout. The checkout check that
            # replaces it (database/deadline.py) replaces a dropped connection within the budget.
            pool_recycle=1800,
            connect_args={
                "connect_timeout": timeout,
                "read_timeout": timeout * 2,  # a long migration's DDL, outside any deadline
                "write_timeout": timeout * 2,
            },
        )
        deadline.install(engine)
        return engine
    raise ValueError(f"unsupported DATABASE_URL backend {parsed.get_backend_name()!r}")


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_database(url: str) -> None:
    """CREATE DATABASE IF NOT EXISTS for a MySQL-protocol URL (a no-op for SQLite)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" or not parsed.database:
        return
    name = parsed.database.replace("`", "``")
    server = make_engine(parsed.set(database="").render_as_string(hide_password=False))
    try:
        with server.begin() as conn:
            conn.execute(text(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4"))
    finally:
        server.dispose()


def make_sessions(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def ping(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def _mysql_code(exc: DBAPIError) -> int | None:
    args = getattr(exc.orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def is_retryable(exc: BaseException) -> bool:
    """A concurrent writer won (our version check failed, a deadlock, a TiDB write conflict, a
    busy SQLite), or a pooled connection turned out dead before anything was committed (a lost
    COMMIT is CommitOutcomeUnknown, never this): running the whole transaction again may
    succeed."""
    if isinstance(exc, StaleDataError | ConcurrentWrite):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, OperationalError):
        if _mysql_code(exc) in RETRYABLE_MYSQL_CODES:
            return True
        return "database is locked" in str(exc.orig)
    return False


def is_unavailable(exc: BaseException) -> bool:
    """The database cannot be reached, dropped the connection or did not answer in time."""
    if isinstance(exc, DeadlineExceeded):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, OperationalError):
        return _mysql_code(exc) in UNAVAILABLE_MYSQL_CODES or "unable to open" in str(exc.orig)
    return False


def is_lost_in_flight(exc: BaseException) -> bool:
    """The connection broke with a command sent and no answer read (a timeout included): the
    server may have executed it. An error the server answered is not this, nor is a connection
    that was closed before anything was sent."""
    if not isinstance(exc, DBAPIError):
        return False
    return exc.connection_invalidated or _mysql_code(exc) in LOST_MYSQL_CODES
