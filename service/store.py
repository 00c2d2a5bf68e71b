"""The bridge from async request handlers to the sync database layer.

Every database call runs in a worker thread (never on the event loop), under a capacity limiter
sized to the connection pool, so waiting threads never exceed connections. Transactions that lose
to a concurrent writer (version check, deadlock, TiDB write conflict) run again, a bounded number
of times with full-jitter backoff; what still fails answers 503.

Each call has one deadline, AURORA_DB_TIMEOUT_SECONDS from when it is made (issue #9): waiting
for a thread, connecting, the pooled connection's check, row locks, statements, COMMIT and every
retry all come out of it, and the socket enforces it in the worker thread itself
(database/deadline.py), so a database that stops answering is a 503 in time and leaves no thread
behind. A COMMIT whose answer was lost is never retried (it may have been applied): it answers
CommitOutcomeUnknown.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from database import engine as db
from database.deadline import DeadlineExceeded, deadline
from database.deadline import check as check_deadline
from database.engine import is_retryable, is_unavailable, make_sessions, ping
from database.migrations import is_schema_missing
from database.uow import Published, SqlUnitOfWork, UnitOfWork
from service.errors import AuroraError, CommitOutcomeUnknown, SchemaNotReady, Unavailable

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

BACKOFF_BASE_SECONDS = 0.01
BACKOFF_CAP_SECONDS = 0.5


class Store:
    def __init__(self, engine: Engine, *, limit: int, retries: int, timeout: float) -> None:
        self.engine = engine
        self._sessions = make_sessions(engine)
        self._limiter = CapacityLimiter(limit)
        self._retries = retries
        self._timeout = timeout

    def unit_of_work(self) -> UnitOfWork:
        return SqlUnitOfWork(self._sessions)

    async def run(
        self,
        use_case: Callable[Concatenate[UnitOfWork, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run `use_case(uow, *args, **kwargs)` in a worker thread with retries."""
        result, _published = await self.run_and_publish(use_case, *args, **kwargs)
        return result

    async def run_and_publish(
        self,
        use_case: Callable[Concatenate[UnitOfWork, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> tuple[T, list[Published]]:
        """Like `run`, and also return the changes the use case committed (its outbox rows)."""
        name = getattr(use_case, "__qualname__", "use case")
        ends = time.monotonic() + self._timeout

        def attempt_once() -> tuple[T, list[Published]]:
            with deadline(ends):  # every wait in this thread comes out of the one budget
                check_deadline()  # it may have passed while this call waited for a thread
                uow = self.unit_of_work()
                result = use_case(uow, *args, **kwargs)
                return result, uow.published

        for attempt in range(1, self._retries + 1):
            try:
                return await anyio.to_thread.run_sync(attempt_once, limiter=self._limiter)
            except AuroraError:
                raise
            except Exception as exc:
                if is_retryable(exc) and attempt < self._retries:
                    # Full jitter: concurrent losers spread out instead of colliding again.
                    cap = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt)
                    delay = random.uniform(0, cap)  # noqa: S311 - jitter, not security
                    if time.monotonic() + delay < ends:  # retries stay inside the deadline
                        log.info(
                            "%s: concurrent write, attempt %d, retry in %.3fs",
                            name,
                            attempt,
                            delay,
                        )
                        await asyncio.sleep(delay)
                        continue
                translated = self._translate(name, exc, attempt, late=time.monotonic() >= ends)
                if translated is None:
                    raise
                raise translated from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _translate(
        self, name: str, exc: BaseException, attempts: int, *, late: bool
    ) -> AuroraError | None:
        if isinstance(exc, db.CommitOutcomeUnknown):
            log.warning("%s: connection lost during COMMIT, outcome unknown: %s", name, exc)
            return CommitOutcomeUnknown()
        if is_retryable(exc):
            log.warning("%s: still conflicting after %d attempts", name, attempts)
            within = "" if attempts == self._retries else f" within {self._timeout:g}s"
            return Unavailable(
                f"the change conflicted with concurrent writes {attempts} times{within}; retry it"
            )
        if isinstance(exc, DeadlineExceeded) or (late and is_unavailable(exc)):
            log.warning("%s: database did not answer within %gs: %s", name, self._timeout, exc)
            return Unavailable(
                f"the database did not answer within {self._timeout:g}s; "
                "nothing was read or changed"
            )
        if is_unavailable(exc) or isinstance(exc, PoolTimeout):
            log.warning("%s: database unavailable: %s", name, exc)
            return Unavailable("the database is unavailable; nothing was read or changed")
        if is_schema_missing(exc):
            return SchemaNotReady()  # no traceback: readiness says it once (service/readiness.py)
        if isinstance(exc, DBAPIError):
            log.error("%s: database error", name, exc_info=exc)
            return Unavailable("the database failed to process the request")
        return None

    async def ping(self) -> None:
        """Raise if the database does not answer within the timeout."""
        ends = time.monotonic() + self._timeout

        def bounded() -> None:
            with deadline(ends):
                ping(self.engine)

        # fail_after bounds the wait for a thread; the deadline bounds the thread itself.
        with anyio.fail_after(self._timeout):
            await anyio.to_thread.run_sync(bounded, limiter=self._limiter, abandon_on_cancel=True)
