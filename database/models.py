"""Tables. Kept portable across TiDB, MySQL/MariaDB and SQLite.

TiDB rules honoured here: utf8mb4, a primary key on every table, no triggers, no stored procedures,
no reliance on foreign keys, and AUTO_INCREMENT ids that are unique but not ordered, so history is
ordered by version and time, never by id. `database/schema.sql` and the Alembic migrations must
produce exactly these tables; tests/integration/test_schema.py checks both against this module.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from aurora_client.state import ConfigState, FlagState, same_json
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column
from sqlalchemy.types import TypeEngine

KEY_LENGTH = 200
SERVICE_LENGTH = 100
ENVIRONMENT_LENGTH = 64
ACTOR_LENGTH = 200
DESCRIPTION_LENGTH = 1000

#: Global configurations have service_name NULL. MySQL/TiDB unique indexes treat NULLs as
#: distinct, so uniqueness uses service_scope, which holds '' for a global (service names are
#: never empty) and is kept equal to service_name by the model.
GLOBAL_SCOPE = ""

#: utf8mb4 on MySQL/TiDB; AUTOINCREMENT on SQLite, which otherwise hands the id of the newest row
#: out again after it is deleted (and an id names one item's history for ever).
TABLE_OPTIONS: dict[str, Any] = {
    "mysql_charset": "utf8mb4",
    "mariadb_charset": "utf8mb4",
    "sqlite_autoincrement": True,
}

# Explicit constraint names so schema.sql, Alembic and the models agree.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}


BINARY_COLLATION = "utf8mb4_bin"


def identifier(length: int) -> TypeEngine[str]:
    """A key, name or scope column: compared byte for byte. MySQL's and MariaDB's default
    utf8mb4 collation is case- and accent-insensitive and holds every emoji equal, so "Flag"
    and "flag", or two different emoji keys, would be one item there (issue 10); SQLite and
    TiDB compare binary by default."""
    return String(length).with_variant(
        mysql.VARCHAR(length, collation=BINARY_COLLATION), "mysql", "mariadb"
    )


# BIGINT AUTO_INCREMENT on MySQL/TiDB; SQLite only auto-increments INTEGER PRIMARY KEY.
Id = BigInteger().with_variant(Integer(), "sqlite")
# Microsecond timestamps (MySQL's bare DATETIME drops fractions), stored as naive UTC.
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


class ExactJSON(JSON):
    """JSON whose change detection tells 1 from true and 2 from 2.0: the ORM decides whether to
    write a column with `compare_values`, which is == by default, so a change from 1 to true
    bumped the version but never reached the database."""

    cache_ok = True

    def compare_values(self, x: Any, y: Any) -> bool:
        return same_json(x, y)


class SQLiteJSON(TypeDecorator[Any]):
    """JSON text in a TEXT column, for SQLite. A column declared JSON has NUMERIC affinity there,
    which turns the text 2.0 into the integer 2 (and 1.50 into 1.5) as it stores it."""

    impl = Text
    cache_ok = True

    def __init__(self, *, none_as_null: bool) -> None:
        super().__init__()
        self.none_as_null = none_as_null

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None and self.none_as_null:
            return None
        return orjson.dumps(value).decode()

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        # A number: a row written before migration 0004, already coerced by NUMERIC affinity.
        return orjson.loads(value) if isinstance(value, str) else value

    def compare_values(self, x: Any, y: Any) -> bool:
        return same_json(x, y)


def json_column(*, none_as_null: bool) -> TypeEngine[Any]:
    return ExactJSON(none_as_null=none_as_null).with_variant(
        SQLiteJSON(none_as_null=none_as_null), "sqlite"
    )


Json = json_column(none_as_null=False)  # a JSON null value is stored as 'null', not SQL NULL
NullableJson = json_column(none_as_null=True)  # None is SQL NULL (no state: created/deleted)


def _empty_list() -> list[Any]:
    return []


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def iso(moment: datetime) -> str:
    """RFC 3339 text of a stored (naive UTC) timestamp."""
    return moment.replace(tzinfo=UTC).isoformat()


def scope_of(service_name: str | None) -> str:
    return GLOBAL_SCOPE if service_name is None else service_name


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Versioned:
    """What every configuration and flag row carries: its version and who changed it when.

    Optimistic concurrency: every UPDATE/DELETE says WHERE version = <the version read>, and
    SQLAlchemy raises StaleDataError when another writer got there first. We set the new version
    ourselves (version_id_generator=False) because a version is also the item's ETag.
    """

    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)
    created_by: Mapped[str] = mapped_column(String(ACTOR_LENGTH))
    updated_by: Mapped[str] = mapped_column(String(ACTOR_LENGTH))

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        return {"version_id_col": cls.__table__.c.version, "version_id_generator": False}  # type: ignore[attr-defined]

    def audit(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "created_by": self.created_by,
            "updated_by": self.updated_by,
        }


class Configuration(Versioned, Base):
    __tablename__ = "app_configurations"
    __table_args__ = (
        UniqueConstraint("environment", "service_scope", "config_key"),
        Index(None, "environment", "config_key"),
        TABLE_OPTIONS,
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    config_key: Mapped[str] = mapped_column(identifier(KEY_LENGTH))
    environment: Mapped[str] = mapped_column(identifier(ENVIRONMENT_LENGTH))
    service_name: Mapped[str | None] = mapped_column(identifier(SERVICE_LENGTH))
    service_scope: Mapped[str] = mapped_column(identifier(SERVICE_LENGTH))
    config_value: Mapped[Any] = mapped_column(Json)
    description: Mapped[str | None] = mapped_column(String(DESCRIPTION_LENGTH))

    def to_state(self) -> ConfigState:
        return ConfigState(
            key=self.config_key,
            environment=self.environment,
            service_name=self.service_name,
            value=self.config_value,
            version=self.version,
        )

    def snapshot(self) -> dict[str, Any]:
        """The item as the API shows it: the history's old/new state and the feed's state."""
        return {
            "id": self.id,
            "config_key": self.config_key,
            "config_value": self.config_value,
            "environment": self.environment,
            "service_name": self.service_name,
            "description": self.description,
            **self.audit(),
        }


class FeatureFlag(Versioned, Base):
    __tablename__ = "feature_flags"
    __table_args__ = (
        UniqueConstraint("environment", "flag_key"),
        TABLE_OPTIONS,
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    flag_key: Mapped[str] = mapped_column(identifier(KEY_LENGTH))
    flag_name: Mapped[str] = mapped_column(String(KEY_LENGTH))
    description: Mapped[str | None] = mapped_column(String(DESCRIPTION_LENGTH))
    environment: Mapped[str] = mapped_column(identifier(ENVIRONMENT_LENGTH))
    is_enabled: Mapped[bool] = mapped_column(Boolean)
    rollout_percentage: Mapped[int] = mapped_column(SmallInteger)
    # Targeting (issue 10, docs/TARGETING.md): JSON lists, [] for a flag without (as every flag
    # written before migration 0006 is: it evaluates exactly as before).
    rules: Mapped[Any] = mapped_column(Json, default=_empty_list)
    variants: Mapped[Any] = mapped_column(Json, default=_empty_list)
    prerequisites: Mapped[Any] = mapped_column(Json, default=_empty_list)

    def to_state(self) -> FlagState:
        return FlagState(
            key=self.flag_key,
            environment=self.environment,
            is_enabled=self.is_enabled,
            rollout_percentage=self.rollout_percentage,
            version=self.version,
        )

    def snapshot(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "flag_key": self.flag_key,
            "flag_name": self.flag_name,
            "description": self.description,
            "environment": self.environment,
            "is_enabled": self.is_enabled,
            "rollout_percentage": self.rollout_percentage,
            "rules": self.rules,
            "variants": self.variants,
            "prerequisites": self.prerequisites,
            **self.audit(),
        }

    def segment_names(self) -> set[str]:
        """The segments this flag's rules refer to."""
        return {
            name
            for rule in self.rules or ()
            if isinstance(rule, dict)
            for name in rule.get("segments") or ()
            if isinstance(name, str)
        }


class Segment(Versioned, Base):
    """A named set of constraints of one environment, referenced by name from flags' rules
    (issue 10). A change of it is one change event (kind 'segment', key its name)."""

    __tablename__ = "segments"
    __table_args__ = (
        UniqueConstraint("environment", "name"),
        TABLE_OPTIONS,
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(identifier(KEY_LENGTH))
    environment: Mapped[str] = mapped_column(identifier(ENVIRONMENT_LENGTH))
    description: Mapped[str | None] = mapped_column(String(DESCRIPTION_LENGTH))
    constraints: Mapped[Any] = mapped_column(Json, default=_empty_list)

    def snapshot(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "environment": self.environment,
            "description": self.description,
            "constraints": self.constraints,
            **self.audit(),
        }


class HistoryEntry(Base):
    """One audit record per create, update and delete of a configuration, a flag or a segment
    (whose name is its item_key).

    It names the item by kind, environment, scope and key as well as by id, so it outlives the
    item, and versions continue across a delete and re-create of the same key.
    """

    __tablename__ = "config_history"
    __table_args__ = (
        Index(None, "item_kind", "item_id", "version"),
        # Unique: a version names one change of one key for ever (migration 0005). Two writers
        # that both read "last version 0" for a key (a create racing a create-and-delete) cannot
        # both record version 1: the second one's insert fails, and its use case runs again.
        Index(
            "ix_config_history_scope_key_version",
            "item_kind",
            "environment",
            "service_scope",
            "item_key",
            "version",
            unique=True,
        ),
        TABLE_OPTIONS,
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    item_kind: Mapped[str] = mapped_column(String(16))  # 'config' | 'flag' | 'segment'
    item_id: Mapped[int] = mapped_column(BigInteger)
    item_key: Mapped[str] = mapped_column(identifier(KEY_LENGTH))
    environment: Mapped[str] = mapped_column(identifier(ENVIRONMENT_LENGTH))
    service_name: Mapped[str | None] = mapped_column(identifier(SERVICE_LENGTH))
    service_scope: Mapped[str] = mapped_column(identifier(SERVICE_LENGTH))
    action: Mapped[str] = mapped_column(String(16))  # 'create' | 'update' | 'delete'
    version: Mapped[int] = mapped_column(Integer)
    old_state: Mapped[Any] = mapped_column(NullableJson, nullable=True)
    new_state: Mapped[Any] = mapped_column(NullableJson, nullable=True)
    actor: Mapped[str] = mapped_column(String(ACTOR_LENGTH))
    changed_at: Mapped[datetime] = mapped_column(Timestamp)


class OutboxEntry(Base):
    """A committed change waiting to be applied to the Redis read model (transactional outbox).

    Written in the same transaction as the change itself, so a change is never committed without
    it; removed once the change is in Redis. Any instance's relay may apply it, any number of
    times: the apply is a compare-and-set by version.
    """

    __tablename__ = "change_outbox"
    __table_args__ = (
        Index(None, "created_at"),
        TABLE_OPTIONS,
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    environment: Mapped[str] = mapped_column(identifier(ENVIRONMENT_LENGTH))
    event: Mapped[Any] = mapped_column(Json)  # aurora_client.events.ChangeEvent.to_dict()
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    # The change's place in its environment's committed sequence (ChangeSequence): the shard of
    # the item and the number within it; 0 for rows written before migration 0005.
    shard: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    sequence: Mapped[int] = mapped_column(BigInteger, server_default="0")
    # Set when the relay could not apply the row (it cannot be parsed, or Redis refuses it): it
    # no longer blocks the others, and the read model is rebuilt from the tables instead.
    quarantined_at: Mapped[datetime | None] = mapped_column(Timestamp)


class ChangeSequence(Base):
    """How many changes were ever committed in an environment, counted per shard (the item's
    key decides its shard: SEQUENCE_SHARDS), bumped in the same transaction as the changes and
    their outbox rows. The Redis read model records which of these it has applied; comparing the
    two proves it holds every acknowledged change, however Redis came back from a fault.

    Sharded because a counter row is locked from its update to the commit, COMMIT's log flush
    included: one row per environment would make every writer of an environment commit one
    after another (measured: 8 writers on MariaDB lost ~28 % of their throughput); writers of
    different shards commit side by side, as before."""

    __tablename__ = "change_sequences"
    __table_args__ = (TABLE_OPTIONS,)

    environment: Mapped[str] = mapped_column(identifier(ENVIRONMENT_LENGTH), primary_key=True)
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    last_sequence: Mapped[int] = mapped_column(BigInteger)


class ApiToken(Base):
    """An API token: only its SHA-256 is stored (tokens are 256-bit random, so a fast hash is
    enough: there is nothing to brute-force); the token itself is shown once, at creation."""

    __tablename__ = "api_tokens"
    __table_args__ = (
        UniqueConstraint("name"),
        UniqueConstraint("token_hash"),
        TABLE_OPTIONS,
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(identifier(ACTOR_LENGTH))
    token_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[Any] = mapped_column(Json)  # list of scope strings
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    created_by: Mapped[str] = mapped_column(String(ACTOR_LENGTH))
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp)
