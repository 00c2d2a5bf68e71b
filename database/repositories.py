"""Repositories: domain-shaped queries over one Session. They never commit."""

from __future__ import annotations

import zlib
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, Literal

from aurora_client.events import ChangeEvent
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session

from database.models import (
    ApiToken,
    ChangeSequence,
    Configuration,
    FeatureFlag,
    HistoryEntry,
    OutboxEntry,
    Segment,
    scope_of,
    utcnow,
)

ItemKind = Literal["config", "flag", "segment"]
ITEM_KINDS: tuple[ItemKind, ...] = ("config", "flag", "segment")

#: Shards of each environment's committed sequence (see ChangeSequence). Changing it is safe:
#: a shard is named by each outbox row and each Redis record, not derived again later.
SEQUENCE_SHARDS = 16


# Bumping a shard is on every write's path: one statement, written out once (a construct built
# per call cost a measurable share of a write's CPU in bench/writes.py).
_ADVANCE_MYSQL = text(
    "INSERT INTO change_sequences (environment, shard, last_sequence) "
    "VALUES (:environment, :shard, :count) "
    "ON DUPLICATE KEY UPDATE last_sequence = LAST_INSERT_ID(last_sequence + :count)"
)
_ADVANCE_SQLITE = text(
    "INSERT INTO change_sequences (environment, shard, last_sequence) "
    "VALUES (:environment, :shard, :count) "
    "ON CONFLICT (environment, shard) DO UPDATE SET last_sequence = last_sequence + :count "
    "RETURNING last_sequence"
)


def sequence_shard(event: dict[str, Any]) -> int:
    """The shard of a change: by its item (kind included: a segment and a flag of one name are
    two items), so the changes of one item stay in one shard."""
    item = f"{event.get('kind')}|{event.get('service_name') or ''}|{event.get('key')}"
    return zlib.crc32(item.encode()) % SEQUENCE_SHARDS


Action = Literal["create", "update", "delete"]


def _kind(stored: str) -> ItemKind:
    for kind in ITEM_KINDS:
        if kind == stored:
            return kind
    raise ValueError(f"unknown history item kind {stored!r}")


def _escape_like(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class ConfigRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, config_id: int, *, for_update: bool = False) -> Configuration | None:
        """`for_update` locks the row until the transaction ends (SELECT ... FOR UPDATE), so
        concurrent writers of one item queue instead of failing the version check and retrying;
        the version check stays as the safety net (SQLite ignores the lock: one writer there)."""
        return self._session.get(Configuration, config_id, with_for_update=for_update)

    def get_by_scope(
        self, env: str, service: str | None, key: str, *, for_update: bool = False
    ) -> Configuration | None:
        query = select(Configuration).where(
            Configuration.environment == env,
            Configuration.service_scope == scope_of(service),
            Configuration.config_key == key,
        )
        return self._session.scalar(query.with_for_update() if for_update else query)

    def list(
        self,
        environments: Sequence[str] | None,
        service: str | None,
        key_prefix: str | None,
        *,
        limit: int,
        offset: int,
    ) -> tuple[Sequence[Configuration], int]:
        """`environments`: None for every one."""
        query = select(Configuration)
        if environments is not None:
            query = query.where(Configuration.environment.in_(environments))
        if service is not None:
            query = query.where(Configuration.service_scope == scope_of(service))
        if key_prefix:
            query = query.where(
                Configuration.config_key.like(_escape_like(key_prefix) + "%", escape="\\")
            )
        total = self._session.scalar(select(func.count()).select_from(query.subquery())) or 0
        page = self._session.scalars(
            query.order_by(
                Configuration.environment, Configuration.service_scope, Configuration.config_key
            )
            .limit(limit)
            .offset(offset)
        ).all()
        return page, total

    def in_scopes(self, env: str, service: str | None) -> Sequence[Configuration]:
        """The environment's globals and, when a service is named, that service's own values."""
        scopes = [scope_of(None)] if service is None else [scope_of(None), scope_of(service)]
        return self._session.scalars(
            select(Configuration).where(
                Configuration.environment == env, Configuration.service_scope.in_(scopes)
            )
        ).all()

    def in_environment(self, env: str) -> Sequence[Configuration]:
        return self._session.scalars(
            select(Configuration).where(Configuration.environment == env)
        ).all()

    def add(self, config: Configuration) -> None:
        self._session.add(config)
        self._session.flush()  # surfaces a duplicate scope now, and assigns the id

    def delete(self, config: Configuration) -> None:
        self._session.delete(config)
        self._session.flush()

    def count(self) -> int:
        return self._session.scalar(select(func.count()).select_from(Configuration)) or 0


class FlagRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, flag_id: int, *, for_update: bool = False) -> FeatureFlag | None:
        """`for_update`: as ConfigRepository.get."""
        return self._session.get(FeatureFlag, flag_id, with_for_update=for_update)

    def get_by_key(self, env: str, key: str, *, for_update: bool = False) -> FeatureFlag | None:
        query = select(FeatureFlag).where(
            FeatureFlag.environment == env, FeatureFlag.flag_key == key
        )
        return self._session.scalar(query.with_for_update() if for_update else query)

    def list(
        self,
        environments: Sequence[str] | None,
        key_prefix: str | None,
        *,
        limit: int,
        offset: int,
    ) -> tuple[Sequence[FeatureFlag], int]:
        """`environments`: None for every one."""
        query = select(FeatureFlag)
        if environments is not None:
            query = query.where(FeatureFlag.environment.in_(environments))
        if key_prefix:
            query = query.where(
                FeatureFlag.flag_key.like(_escape_like(key_prefix) + "%", escape="\\")
            )
        total = self._session.scalar(select(func.count()).select_from(query.subquery())) or 0
        page = self._session.scalars(
            query.order_by(FeatureFlag.environment, FeatureFlag.flag_key)
            .limit(limit)
            .offset(offset)
        ).all()
        return page, total

    def in_environment(self, env: str, *, for_update: bool = False) -> Sequence[FeatureFlag]:
        """`for_update` locks them all (a rare write that must see every flag as committed and
        keep it so until it commits: a prerequisite graph's cycle check, a segment's delete)."""
        query = select(FeatureFlag).where(FeatureFlag.environment == env)
        if for_update:
            query = query.order_by(FeatureFlag.id).with_for_update()
        return self._session.scalars(query).all()

    def add(self, flag: FeatureFlag) -> None:
        self._session.add(flag)
        self._session.flush()

    def delete(self, flag: FeatureFlag) -> None:
        self._session.delete(flag)
        self._session.flush()

    def count(self) -> int:
        return self._session.scalar(select(func.count()).select_from(FeatureFlag)) or 0


class SegmentRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def get_by_name(self, env: str, name: str, *, for_update: bool = False) -> Segment | None:
        query = select(Segment).where(Segment.environment == env, Segment.name == name)
        return self._session.scalar(query.with_for_update() if for_update else query)

    def existing(self, env: str, names: Collection[str], *, for_update: bool = False) -> set[str]:
        """Which of these segments exist. `for_update` locks them until the transaction ends, so
        a rule that refers to one cannot be committed alongside its delete."""
        if not names:
            return set()
        query = select(Segment.name).where(
            Segment.environment == env, Segment.name.in_(sorted(names))
        )
        if for_update:
            query = query.order_by(Segment.name).with_for_update()
        return set(self._session.scalars(query).all())

    def list(
        self, environments: Sequence[str] | None, *, limit: int, offset: int
    ) -> tuple[Sequence[Segment], int]:
        """`environments`: None for every one."""
        query = select(Segment)
        if environments is not None:
            query = query.where(Segment.environment.in_(environments))
        total = self._session.scalar(select(func.count()).select_from(query.subquery())) or 0
        page = self._session.scalars(
            query.order_by(Segment.environment, Segment.name).limit(limit).offset(offset)
        ).all()
        return page, total

    def in_environment(self, env: str) -> Sequence[Segment]:
        return self._session.scalars(select(Segment).where(Segment.environment == env)).all()

    def count(self, env: str) -> int:
        return (
            self._session.scalar(
                select(func.count()).select_from(Segment).where(Segment.environment == env)
            )
            or 0
        )

    def add(self, segment: Segment) -> None:
        self._session.add(segment)
        self._session.flush()

    def delete(self, segment: Segment) -> None:
        self._session.delete(segment)
        self._session.flush()


class HistoryRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def record(
        self,
        kind: ItemKind,
        action: Action,
        *,
        item_id: int,
        key: str,
        env: str,
        service: str | None,
        version: int,
        old: dict[str, Any] | None,
        new: dict[str, Any] | None,
        actor: str,
    ) -> None:
        self._session.add(
            HistoryEntry(
                item_kind=kind,
                item_id=item_id,
                item_key=key,
                environment=env,
                service_name=service,
                service_scope=scope_of(service),
                action=action,
                version=version,
                old_state=old,
                new_state=new,
                actor=actor,
                changed_at=utcnow(),
            )
        )

    def for_key(
        self, kind: ItemKind, env: str, service: str | None, key: str
    ) -> Sequence[HistoryEntry]:
        """Every change of one key in one scope, across deletes and re-creates; newest first."""
        return self._session.scalars(
            select(HistoryEntry)
            .where(
                HistoryEntry.item_kind == kind,
                HistoryEntry.environment == env,
                HistoryEntry.service_scope == scope_of(service),
                HistoryEntry.item_key == key,
            )
            .order_by(HistoryEntry.version.desc(), HistoryEntry.changed_at.desc())
        ).all()

    def for_item(self, kind: ItemKind, item_id: int) -> Sequence[HistoryEntry]:
        """Newest first. By version, then time: TiDB ids are unique but not ordered."""
        return self._session.scalars(
            select(HistoryEntry)
            .where(HistoryEntry.item_kind == kind, HistoryEntry.item_id == item_id)
            .order_by(HistoryEntry.version.desc(), HistoryEntry.changed_at.desc())
        ).all()

    def last_version(self, kind: ItemKind, env: str, service: str | None, key: str) -> int:
        """The highest version this key ever had in this scope (0 if never), so a re-created key
        continues its version sequence and versions keep ordering every change of one key."""
        last = self._session.scalar(
            select(func.max(HistoryEntry.version)).where(
                HistoryEntry.item_kind == kind,
                HistoryEntry.environment == env,
                HistoryEntry.service_scope == scope_of(service),
                HistoryEntry.item_key == key,
            )
        )
        return last or 0

    def deleted_versions(self, env: str) -> list[tuple[ItemKind, str | None, str, int]]:
        """(kind, service, key, version) of the last delete of every key ever deleted in the
        environment. A rebuilt read model keeps them as tombstones, so an older change still in
        the outbox cannot bring a deleted item back; a re-created key's live version is higher."""
        rows = self._session.execute(
            select(
                HistoryEntry.item_kind,
                HistoryEntry.service_scope,
                HistoryEntry.item_key,
                func.max(HistoryEntry.version),
            )
            .where(HistoryEntry.environment == env, HistoryEntry.action == "delete")
            .group_by(HistoryEntry.item_kind, HistoryEntry.service_scope, HistoryEntry.item_key)
        ).all()
        return [(_kind(kind), scope or None, key, version) for kind, scope, key, version in rows]


class OutboxRepository:
    """Changes committed but not yet applied to the read model."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self.added: list[OutboxEntry] = []

    def add(self, event: ChangeEvent) -> None:
        """Queue a change; `number_and_add` gives it its sequence number when the unit of work
        commits."""
        self.added.append(
            OutboxEntry(environment=event.environment, event=event.to_dict(), created_at=utcnow())
        )

    def number_and_add(self) -> None:
        """Number the queued changes in their environments' committed sequences (one locked
        increment per environment and shard, in a fixed order) and insert them. Called by the
        unit of work's commit."""
        counts: dict[tuple[str, int], int] = {}
        for entry in self.added:
            entry.shard = sequence_shard(entry.event)
            counts[entry.environment, entry.shard] = (
                counts.get((entry.environment, entry.shard), 0) + 1
            )
        last = {place: self._advance(*place, count) for place, count in sorted(counts.items())}
        for entry in reversed(self.added):
            entry.sequence = last[entry.environment, entry.shard]
            last[entry.environment, entry.shard] -= 1
        self._session.add_all(self.added)

    def _advance(self, environment: str, shard: int, count: int) -> int:
        """Add `count` to one shard of the environment's sequence (created at `count` if
        missing) and return the new value. The row stays locked until the transaction ends, so
        numbers are dense and never handed out twice."""
        params = {"environment": environment, "shard": shard, "count": count}
        if self._session.get_bind().dialect.name == "sqlite":
            return int(self._session.execute(_ADVANCE_SQLITE, params).scalar_one())
        # MySQL, MariaDB, TiDB: LAST_INSERT_ID(expr) puts the new value in the OK packet's
        # insert id (0 when the row was inserted instead: then it is `count`).
        result: Any = self._session.execute(_ADVANCE_MYSQL, params)
        return int(result.lastrowid or count)

    def committed(self, environment: str) -> tuple[dict[int, int], list[tuple[int, int]]]:
        """({shard: last committed sequence number}, the (shard, number) of the environment's
        changes still waiting in the outbox): what the read model must hold, and what it may
        still miss."""
        last = self._session.execute(
            select(ChangeSequence.shard, ChangeSequence.last_sequence).where(
                ChangeSequence.environment == environment
            )
        ).all()
        waiting = self._session.execute(
            select(OutboxEntry.shard, OutboxEntry.sequence).where(
                OutboxEntry.environment == environment,
                OutboxEntry.quarantined_at.is_(None),
                OutboxEntry.sequence > 0,
            )
        ).all()
        return {int(shard): int(n) for shard, n in last}, [(int(a), int(b)) for a, b in waiting]

    def pending(self, limit: int, skip: Collection[str] = ()) -> Sequence[OutboxEntry]:
        """Oldest first (by time, then id: TiDB ids are unique but not ordered), leaving out
        quarantined rows and the environments in `skip`."""
        query = select(OutboxEntry).where(OutboxEntry.quarantined_at.is_(None))
        if skip:
            query = query.where(OutboxEntry.environment.not_in(skip))
        return self._session.scalars(
            query.order_by(OutboxEntry.created_at, OutboxEntry.id).limit(limit)
        ).all()

    def quarantine(self, ids: Sequence[int]) -> None:
        if ids:
            self._session.execute(
                update(OutboxEntry).where(OutboxEntry.id.in_(ids)).values(quarantined_at=utcnow())
            )

    def remove(self, ids: Sequence[int]) -> None:
        if ids:
            self._session.execute(delete(OutboxEntry).where(OutboxEntry.id.in_(ids)))

    def backlog(self) -> tuple[int, datetime | None]:
        """How many changes wait, and since when the oldest has (quarantined rows excluded)."""
        count, oldest = self._session.execute(
            select(func.count(), func.min(OutboxEntry.created_at)).where(
                OutboxEntry.quarantined_at.is_(None)
            )
        ).one()
        return int(count or 0), oldest

    def quarantined(self) -> int:
        return (
            self._session.scalar(
                select(func.count())
                .select_from(OutboxEntry)
                .where(OutboxEntry.quarantined_at.is_not(None))
            )
            or 0
        )


class TokenRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def by_name(self, name: str) -> ApiToken | None:
        return self._session.scalar(select(ApiToken).where(ApiToken.name == name))

    def all(self) -> Sequence[ApiToken]:
        return self._session.scalars(select(ApiToken).order_by(ApiToken.name)).all()

    def add(self, token: ApiToken) -> None:
        self._session.add(token)
        self._session.flush()
