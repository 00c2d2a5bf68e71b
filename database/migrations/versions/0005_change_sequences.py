"""Freshness and version guarantees (issue 9).

- `change_sequences`: the number of changes committed per environment and shard, bumped in
  each change's transaction (sharded by item key so writers do not queue on one row). The Redis read model records which sequence numbers it has applied, so a Redis
  that came back with fewer changes than were acknowledged is detected and rebuilt.
- `change_outbox.shard` and `.sequence` (the change's number; 0 for rows written before) and
  `change_outbox.quarantined_at` (a row the relay could not apply no longer blocks the others).
- `ix_config_history_scope_key_version` becomes unique: a version names one change of one key.
  A database that already holds two history rows with one version of one key (the race this
  index closes) cannot be given the index: the upgrade stops and names them, for a person to
  decide which row is the truth. Nothing is changed in that case.

The sequence rows start at 0 for every environment: a read model built before this revision has
no record of applied sequences, and is rebuilt once on first start (a normal rebuild).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
UTF8: dict[str, Any] = {
    "mysql_charset": "utf8mb4",
    "mariadb_charset": "utf8mb4",
    "sqlite_autoincrement": True,
}
HISTORY_KEY = ["item_kind", "environment", "service_scope", "item_key", "version"]
INDEX = "ix_config_history_scope_key_version"


class DuplicateVersions(RuntimeError):
    """History already holds one version of one key twice: the unique index cannot be built."""


def _refuse_duplicates() -> None:
    columns = ", ".join(HISTORY_KEY)
    rows = (
        op.get_bind()
        .execute(
            sa.text(
                f"SELECT {columns}, COUNT(*) FROM config_history "  # noqa: S608 - constant text
                f"GROUP BY {columns} HAVING COUNT(*) > 1 LIMIT 20"
            )
        )
        .all()
    )
    if rows:
        listed = "; ".join(f"{r[0]} {r[1]}/{r[2] or '(global)'}/{r[3]} v{r[4]}" for r in rows)
        raise DuplicateVersions(
            "config_history records these versions more than once (a create raced a delete "
            f"before this fix): {listed}. Keep one row of each (SELECT * FROM config_history "
            "WHERE item_kind=... AND environment=... AND item_key=... AND version=...), delete "
            "the others, and run the migration again."
        )


def upgrade() -> None:
    _refuse_duplicates()
    op.create_table(
        "change_sequences",
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("shard", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("last_sequence", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("environment", "shard", name="pk_change_sequences"),
        **UTF8,
    )
    with op.batch_alter_table("change_outbox") as batch:
        batch.add_column(sa.Column("shard", sa.SmallInteger(), server_default="0", nullable=False))
        batch.add_column(
            sa.Column("sequence", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch.add_column(sa.Column("quarantined_at", TIMESTAMP, nullable=True))
    with op.batch_alter_table("config_history") as batch:
        batch.drop_index(INDEX)
        batch.create_index(INDEX, HISTORY_KEY, unique=True)


def downgrade() -> None:
    with op.batch_alter_table("config_history") as batch:
        batch.drop_index(INDEX)
        batch.create_index(INDEX, HISTORY_KEY)
    with op.batch_alter_table("change_outbox") as batch:
        batch.drop_column("quarantined_at")
        batch.drop_column("sequence")
        batch.drop_column("shard")
    op.drop_table("change_sequences")
