"""Unit of work: one transaction, the repositories that share it, and one commit."""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self

from sqlalchemy.orm import Session, sessionmaker

from database.repositories import ConfigRepository, FlagRepository, HistoryRepository


class UnitOfWork(Protocol):
    configs: ConfigRepository
    flags: FlagRepository
    history: HistoryRepository

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None: ...


class SqlUnitOfWork:
    """`with uow:` opens a session; leaving without `commit()` rolls back."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def __enter__(self) -> Self:
        # expire_on_commit=False on the factory: objects stay readable after commit, for responses.
        self._session = self._sessions()
        self.configs = ConfigRepository(self._session)
        self.flags = FlagRepository(self._session)
        self.history = HistoryRepository(self._session)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # close() rolls back anything uncommitted and detaches the objects *without* expiring
        # them, so what a use case returns stays readable after the unit of work ends.
        self._session.close()

    def commit(self) -> None:
        self._session.commit()
