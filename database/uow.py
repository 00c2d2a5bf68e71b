"""Unit of work: one transaction, the repositories that share it, and one commit."""

from __future__ import annotations

from types import TracebackType
from typing import NamedTuple, Protocol, Self

from aurora_client.events import ChangeEvent
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from database.engine import CommitOutcomeUnknown, is_lost_in_flight
from database.repositories import (
    ConfigRepository,
    FlagRepository,
    HistoryRepository,
    OutboxRepository,
    SegmentRepository,
    TokenRepository,
)


class Published(NamedTuple):
    """A committed change, the id of its outbox row, and its place in its environment's
    committed sequence: a shard and a number (0 for rows written before sequences existed)."""

    outbox_id: int
    event: ChangeEvent
    shard: int = 0
    sequence: int = 0


class UnitOfWork(Protocol):
    configs: ConfigRepository
    flags: FlagRepository
    segments: SegmentRepository
    history: HistoryRepository
    outbox: OutboxRepository
    tokens: TokenRepository
    published: list[Published]  # filled by commit(): the changes it made durable

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
        self.published: list[Published] = []

    def __enter__(self) -> Self:
        # expire_on_commit=False on the factory: objects stay readable after commit, for responses.
        self._session = self._sessions()
        self.configs = ConfigRepository(self._session)
        self.flags = FlagRepository(self._session)
        self.segments = SegmentRepository(self._session)
        self.history = HistoryRepository(self._session)
        self.outbox = OutboxRepository(self._session)
        self.tokens = TokenRepository(self._session)
        self.published = []
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
        # Numbered last, right before COMMIT: the environment's sequence row stays locked only
        # for the outbox insert and the commit itself, not for the whole use case.
        self.outbox.number_and_add()
        self._session.flush()  # a statement that fails here changed nothing: only COMMIT is moot
        try:
            self._session.commit()
        except DBAPIError as exc:
            if is_lost_in_flight(exc):  # COMMIT sent, no answer: it may have been applied
                raise CommitOutcomeUnknown(str(exc.orig)) from exc
            raise
        self.published = [
            Published(entry.id, ChangeEvent.from_dict(entry.event), entry.shard, entry.sequence)
            for entry in self.outbox.added
        ]
