"""Use cases behind the read model: the outbox relay, its proof of freshness, full rebuilds."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from aurora_client.events import ChangeEvent

from cache.read_model import EnvironmentItems, Tombstone
from database.uow import Published, UnitOfWork

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Pending:
    """One relay batch: the changes to apply, and the ids of rows that could not be read."""

    changes: list[Published]
    unreadable: list[int]


def pending(uow: UnitOfWork, limit: int, skip: frozenset[str] = frozenset()) -> Pending:
    """The oldest waiting changes (of the environments not in `skip`). A row that cannot be
    parsed is reported apart (the relay quarantines it) instead of failing the batch: one bad
    row must not block every other."""
    changes: list[Published] = []
    unreadable: list[int] = []
    with uow:
        for entry in uow.outbox.pending(limit, skip):
            try:
                event = ChangeEvent.from_dict(entry.event)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                log.error(
                    "outbox row %d cannot be read (%s: %s)", entry.id, type(exc).__name__, exc
                )
                unreadable.append(entry.id)
                continue
            changes.append(Published(entry.id, event, entry.shard, entry.sequence))
    return Pending(changes, unreadable)


def forget(uow: UnitOfWork, ids: Sequence[int]) -> None:
    """The changes are in Redis: their outbox rows are done."""
    with uow:
        uow.outbox.remove(ids)
        uow.commit()


def quarantine(uow: UnitOfWork, ids: Sequence[int]) -> None:
    """Set rows aside that the relay cannot apply: kept for a person to look at, no longer
    pending. Their changes are still in the tables: the next freshness check finds them missing
    from Redis and rebuilds the environment's read model from there."""
    with uow:
        uow.outbox.quarantine(ids)
        uow.commit()


def backlog(uow: UnitOfWork) -> tuple[int, datetime | None]:
    with uow:
        return uow.outbox.backlog()


def quarantined(uow: UnitOfWork) -> int:
    with uow:
        return uow.outbox.quarantined()


def committed(uow: UnitOfWork, environment: str) -> tuple[dict[int, int], list[tuple[int, int]]]:
    """The environment's last committed sequence number per shard, and those still waiting."""
    with uow:
        return uow.outbox.committed(environment)


def environment_items(uow: UnitOfWork, environment: str) -> EnvironmentItems:
    """Every configuration, flag and segment of an environment as the read model stores them,
    the tombstones of the keys (and segment names) deleted there, and the committed sequence
    number they reflect: all read in one transaction, so they describe one moment."""
    with uow:
        sequence, _waiting = uow.outbox.committed(environment)
        return EnvironmentItems(
            configs=[c.snapshot() for c in uow.configs.in_environment(environment)],
            flags=[f.snapshot() for f in uow.flags.in_environment(environment)],
            segments=[s.snapshot() for s in uow.segments.in_environment(environment)],
            tombstones=[Tombstone(*row) for row in uow.history.deleted_versions(environment)],
            sequence=sequence,
        )
