"""Use cases behind the read model: the outbox relay and full rebuilds."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from aurora_client.events import ChangeEvent

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


def environment_items(
    uow: UnitOfWork, environment: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every configuration and flag of an environment, as the read model stores them."""
    with uow:
        configs = [c.snapshot() for c in uow.configs.in_environment(environment)]
        flags = [f.snapshot() for f in uow.flags.in_environment(environment)]
        return configs, flags
