"""The bridge from async request handlers to the sync database layer.

Every database call runs in a worker thread (never on the event loop), under a capacity limiter
sized to the connection pool, so waiting threads never exceed connections. Transactions that lose
to a concurrent writer (version check, deadlock, TiDB write conflict) run again, a bounded number
of times with full-jitter backoff; what still fails answers 503.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from database.engine import is_retryable, is_unavailable, make_sessions, ping
from database.migrations import is_schema_missing
from database.uow import Published, SqlUnitOfWork, UnitOfWork
from service.errors import AuroraError, SchemaNotReady, Unavailable

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

        def attempt_once() -> tuple[T, list[Published]]:
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
                    log.info(
                        "%s: concurrent write, attempt %d, retry in %.3fs", name, attempt, delay
                    )
                    await asyncio.sleep(delay)
                    continue
                translated = self._translate(name, exc)
                if translated is None:
                    raise
                raise translated from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _translate(self, name: str, exc: BaseException) -> AuroraError | None:
        if is_retryable(exc):
            log.warning("%s: still conflicting after %d attempts", name, self._retries)
            return Unavailable(
                f"the change conflicted with concurrent writes {self._retries} times; retry it"
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
        with anyio.fail_after(self._timeout):
            await anyio.to_thread.run_sync(
                ping, self.engine, limiter=self._limiter, abandon_on_cancel=True
            )
