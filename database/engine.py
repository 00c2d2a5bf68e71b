"""Engine construction for each supported backend, and the transient-error rules."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

# MySQL/MariaDB/TiDB error codes that mean "run the transaction again":
# 1205 lock wait timeout, 1213 deadlock, 8002/8022 TiDB retry errors, 9007 TiDB write conflict,
# 1412 table definition changed (a migration ran DDL during the transaction).
RETRYABLE_MYSQL_CODES = frozenset({1205, 1213, 1412, 8002, 8022, 9007})
# Codes that mean the server is unreachable or went away: 2002/2003/2005 cannot connect,
# 2006/2013 gone away / lost connection, 1040 too many connections, 1053 shutdown in progress.
UNAVAILABLE_MYSQL_CODES = frozenset({1040, 1053, 2002, 2003, 2005, 2006, 2013})


class ConcurrentWrite(Exception):
    """Raised by a use case when a concurrent writer made its transaction moot; run it again."""


def make_engine(
    url: str, *, pool_size: int = 10, max_overflow: int = 10, timeout: float = 5.0
) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": timeout},
            pool_size=pool_size,
            max_overflow=max_overflow,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() in {"mysql", "mariadb"}:
        if "charset" not in parsed.query:
            parsed = parsed.update_query_dict({"charset": "utf8mb4"})
        return create_engine(
            parsed,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=timeout,
            pool_pre_ping=True,  # a pooled connection the server dropped is replaced, not failed
            pool_recycle=1800,
            connect_args={
                "connect_timeout": max(1, round(timeout)),
                "read_timeout": max(1, round(timeout * 2)),
                "write_timeout": max(1, round(timeout * 2)),
            },
        )
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
    busy SQLite): running the whole transaction again may succeed."""
    if isinstance(exc, StaleDataError | ConcurrentWrite):
        return True
    if isinstance(exc, OperationalError):
        if _mysql_code(exc) in RETRYABLE_MYSQL_CODES:
            return True
        return "database is locked" in str(exc.orig)
    return False


def is_unavailable(exc: BaseException) -> bool:
    """The database cannot be reached or dropped the connection."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, OperationalError):
        return _mysql_code(exc) in UNAVAILABLE_MYSQL_CODES or "unable to open" in str(exc.orig)
    return False
