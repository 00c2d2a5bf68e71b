"""A deadline for each database call, enforced by the socket (issue #9).

The caller (the service's Store) opens `deadline(at)` in the worker thread that runs the call.
Within it, every wait on the database is bounded by what is left of that one budget, so they add
up to the deadline instead of each having its own timeout:

- connecting and the handshake, and every read and write on a MySQL-protocol socket afterwards
  (pre-ping, statements, COMMIT): `DeadlineConnection` is a pymysql connection whose connect,
  read and write timeouts are the budget left at the moment of each socket operation;
- the check a pooled connection gets at checkout (our own, instead of SQLAlchemy's
  `pool_pre_ping`, whose wait is the fixed read timeout): one round trip that also sets the
  server's row-lock wait (`innodb_lock_wait_timeout`, whole seconds, MariaDB, MySQL and TiDB)
  below the budget, so queueing behind a `SELECT ... FOR UPDATE` ends with the server's own
  error 1205 in time, and the socket timeout is only the backstop;
- SQLite's busy timeout (waiting for the one writer), set from the budget at checkout;
- no statement and no COMMIT starts once the deadline has passed: `DeadlineExceeded`, with
  nothing sent.

An asyncio timeout around the worker thread would not do this: it does not stop the thread,
which keeps its connection and waits on; these bounds end the wait in the thread itself. Outside
`deadline()` (migrations, the CLI, tests) the engine's fixed timeouts apply as before.

It relies on two pymysql internals, checked against 1.1 and 1.2: the socket timeout is taken from
`_read_timeout`/`_write_timeout` on every operation (1.2 caches the last one set, hence the
50 ms steps below), and `connect_timeout` when connecting.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import pymysql
from sqlalchemy import Engine, event
from sqlalchemy.exc import DisconnectionError

_deadline: ContextVar[float | None] = ContextVar("aurora_db_deadline", default=None)

#: The least a socket operation is given once the deadline has passed (a ROLLBACK as a pooled
#: connection is returned, say): enough for an answering server, little past the bound.
# A connection checked back in less than this ago is handed out without a ping: a ping is one
# round trip of the six or seven a write makes (bench/writes.py), and one that died in that
# second fails its first statement, which the Store runs again (is_retryable: nothing was
# committed yet), within the same deadline.
FRESH_SECONDS = 1.0
FLOOR_SECONDS = 0.1
#: Socket timeouts move in these steps, so pymysql does not reset the socket's for every packet.
STEP_SECONDS = 0.05


class DeadlineExceeded(Exception):
    """The call's deadline passed before the database answered; nothing more was sent."""


@contextmanager
def deadline(at: float) -> Iterator[None]:
    """Bound every database wait in this thread (context) by `at`, a `time.monotonic()` value."""
    token = _deadline.set(at)
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining() -> float | None:
    """Seconds left before the current deadline (negative once past), or None without one."""
    at = _deadline.get()
    return None if at is None else at - time.monotonic()


def _bounded(configured: float | None) -> float | None:
    left = remaining()
    if left is None:
        return configured
    wait = max(FLOOR_SECONDS, math.ceil(left / STEP_SECONDS) * STEP_SECONDS)
    return wait if configured is None else min(configured, wait)


def check() -> None:
    """Refuse to start another exchange with the database once the deadline has passed."""
    left = remaining()
    if left is not None and left <= 0:
        raise DeadlineExceeded(f"the database call's deadline passed {-left:.2f}s ago")


class DeadlineConnection(pymysql.connections.Connection):
    """A pymysql connection whose socket waits never outlast the current deadline."""

    checked_out = False  # set at its first checkout: a failed check after that is a stale one
    lock_wait: int | None = None  # the session's innodb_lock_wait_timeout, once we set it
    answered_at = 0.0  # when it last worked (checked back in): recent enough, no ping

    @property
    def connect_timeout(self) -> float | None:
        return _bounded(self._connect_timeout)

    @connect_timeout.setter
    def connect_timeout(self, value: float | None) -> None:
        self._connect_timeout = value

    @property
    def _read_timeout(self) -> float | None:
        return _bounded(self._read_timeout_configured)

    @_read_timeout.setter
    def _read_timeout(self, value: float | None) -> None:
        self._read_timeout_configured = value

    @property
    def _write_timeout(self) -> float | None:
        return _bounded(self._write_timeout_configured)

    @_write_timeout.setter
    def _write_timeout(self, value: float | None) -> None:
        self._write_timeout_configured = value


def lock_wait_seconds(left: float) -> int:
    """The server's row-lock wait for a call with `left` seconds: whole seconds, at least 1,
    and a second short of the budget so the server gives up before the socket does."""
    return max(1, math.ceil(left) - 1)


def _connect_mysql(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> DeadlineConnection:
    check()
    return DeadlineConnection(*cargs, **cparams)


def _check_mysql(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """At checkout: prove the connection answers (and set the row-lock wait) within the budget.
    A pooled connection that fails is replaced once (DisconnectionError makes the pool connect
    again, the handshake bounded by what is left); a fresh one that fails fails the call."""
    conn: DeadlineConnection = dbapi_connection
    stale, conn.checked_out = conn.checked_out, True
    check()
    left = remaining()
    try:
        wait = None if left is None else lock_wait_seconds(left)
        if wait is None or wait == conn.lock_wait:
            if time.monotonic() - conn.answered_at < FRESH_SECONDS:
                return  # it worked a moment ago; if it died since, the Store runs the call again
            conn.ping(False)
        else:
            with conn.cursor() as cursor:
                cursor.execute(f"SET SESSION innodb_lock_wait_timeout = {wait:d}")
            conn.lock_wait = wait
    except pymysql.err.MySQLError as exc:
        if not stale:
            raise
        check()  # no budget left for a new connection: the call fails now
        raise DisconnectionError(f"pooled connection failed its check: {exc}") from exc


def _checked_in(dbapi_connection: Any, _record: Any) -> None:
    if dbapi_connection is not None:  # None once invalidated
        dbapi_connection.answered_at = time.monotonic()


def _check_sqlite(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    check()
    left = remaining()
    if left is not None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {max(1, int(left * 1000)):d}")
        cursor.close()


def _before_statement(*_args: Any) -> None:
    check()


def _before_commit(_conn: Any) -> None:
    check()


def install(engine: Engine) -> None:
    """Make `engine` keep to the deadline of the call that uses it."""
    if engine.dialect.name == "sqlite":
        event.listen(engine, "checkout", _check_sqlite)
    else:
        event.listen(engine, "do_connect", _connect_mysql)
        event.listen(engine, "checkout", _check_mysql)
        event.listen(engine, "checkin", _checked_in)
    event.listen(engine, "before_cursor_execute", _before_statement)
    event.listen(engine, "commit", _before_commit)
