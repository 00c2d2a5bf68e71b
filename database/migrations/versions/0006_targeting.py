"""Targeting (issue 10): flag rules, variants and prerequisites, segments, binary key collation.

- `feature_flags.rules`, `.variants`, `.prerequisites`: JSON lists, NOT NULL; every existing flag
  gets [] (no rules: it evaluates exactly as before, so no cohort moves).
- `segments`: named constraint sets per environment (unique by environment and name), versioned
  and audited like flags; their history rows have item_kind 'segment'.
- On MySQL and MariaDB, every key, name and scope column (configuration and flag keys, history
  keys, segment names, environments, service names and scopes, token names) becomes
  utf8mb4_bin: their default utf8mb4 collation is case- and accent-insensitive and holds every
  emoji equal, so "Flag" and "flag", or two emoji keys, were one item. Under the binary collation
  every pair of distinct strings stays distinct, so existing unique keys cannot collide. SQLite
  and TiDB compare binary already; nothing changes there. (A downgrade goes back to the table's
  default collation, and fails if two keys then collide.)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-09
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
JSON = sa.JSON().with_variant(sa.Text(), "sqlite")  # TEXT on SQLite: see migration 0004
UTF8: dict[str, Any] = {
    "mysql_charset": "utf8mb4",
    "mariadb_charset": "utf8mb4",
    "sqlite_autoincrement": True,
}
BINARY = "utf8mb4_bin"
TARGETING = ("rules", "variants", "prerequisites")

#: (table, column, length, nullable) of every identifier column.
IDENTIFIERS = (
    ("app_configurations", "config_key", 200, False),
    ("app_configurations", "environment", 64, False),
    ("app_configurations", "service_name", 100, True),
    ("app_configurations", "service_scope", 100, False),
    ("feature_flags", "flag_key", 200, False),
    ("feature_flags", "environment", 64, False),
    ("config_history", "item_key", 200, False),
    ("config_history", "environment", 64, False),
    ("config_history", "service_name", 100, True),
    ("config_history", "service_scope", 100, False),
    ("change_outbox", "environment", 64, False),
    ("change_sequences", "environment", 64, False),
    ("api_tokens", "name", 200, False),
)


def identifier(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, collation=BINARY), "mysql", "mariadb"
    )


def _collate(binary: bool) -> None:
    if op.get_bind().dialect.name != "mysql":  # MySQL, MariaDB and TiDB all report "mysql"
        return
    for table, column, length, nullable in IDENTIFIERS:
        op.alter_column(
            table,
            column,
            type_=mysql.VARCHAR(length, collation=BINARY if binary else None),
            existing_type=sa.String(length),
            existing_nullable=nullable,
        )


def upgrade() -> None:
    _collate(binary=True)
    with op.batch_alter_table("feature_flags") as batch:
        for column in TARGETING:
            batch.add_column(sa.Column(column, JSON, nullable=True))
    op.execute(
        sa.text("UPDATE feature_flags SET rules = '[]', variants = '[]', prerequisites = '[]'")
    )
    with op.batch_alter_table(
        "feature_flags", table_kwargs={"sqlite_autoincrement": True}
    ) as batch:
        for column in TARGETING:
            batch.alter_column(column, existing_type=JSON, nullable=False)
    op.create_table(
        "segments",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("name", identifier(200), nullable=False),
        sa.Column("environment", identifier(64), nullable=False),
        sa.Column("description", sa.String(1000), nullable=True),
        sa.Column("constraints", JSON, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_segments"),
        sa.UniqueConstraint("environment", "name", name="uq_segments_environment_name"),
        **UTF8,
    )


def downgrade() -> None:
    op.drop_table("segments")
    with op.batch_alter_table(
        "feature_flags", table_kwargs={"sqlite_autoincrement": True}
    ) as batch:
        for column in TARGETING:
            batch.drop_column(column)
    _collate(binary=False)
