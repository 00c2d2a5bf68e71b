"""Use cases behind the read model: the outbox relay and full rebuilds."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from aurora_client.events import ChangeEvent

from cache.read_model import EnvironmentItems, Tombstone
from database.uow import Published, UnitOfWork


def pending(uow: UnitOfWork, limit: int) -> list[Published]:
    with uow:
        return [(e.id, ChangeEvent.from_dict(e.event)) for e in uow.outbox.pending(limit)]


def forget(uow: UnitOfWork, ids: Sequence[int]) -> None:
    """The changes are in Redis: their outbox rows are done."""
    with uow:
        uow.outbox.remove(ids)
        uow.commit()


def backlog(uow: UnitOfWork) -> tuple[int, datetime | None]:
    with uow:
        return uow.outbox.backlog()


def environment_items(uow: UnitOfWork, environment: str) -> EnvironmentItems:
    """Every configuration and flag of an environment as the read model stores them, and the
    tombstones of the keys deleted there."""
    with uow:
        return EnvironmentItems(
            configs=[c.snapshot() for c in uow.configs.in_environment(environment)],
            flags=[f.snapshot() for f in uow.flags.in_environment(environment)],
            tombstones=[Tombstone(*row) for row in uow.history.deleted_versions(environment)],
        )
