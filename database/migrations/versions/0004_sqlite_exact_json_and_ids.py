"""SQLite only: JSON in TEXT columns, and ids never handed out twice.

A column declared JSON has NUMERIC affinity on SQLite, which stored the JSON text 2.0 as the
integer 2; and without AUTOINCREMENT SQLite gives the id of the newest row to the next insert
once that row is deleted, so a new item inherited a deleted one's history. Each table is rebuilt
(Alembic's batch mode: create, copy, drop, rename) with TEXT JSON columns and AUTOINCREMENT.
MySQL, MariaDB and TiDB need neither: nothing changes there.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

JSON_COLUMNS = {
    "app_configurations": ["config_value"],
    "feature_flags": [],
    "config_history": ["old_state", "new_state"],
    "change_outbox": ["event"],
    "api_tokens": ["scopes"],
}


def _rebuild(json_type: sa.types.TypeEngine[Any], *, autoincrement: bool) -> None:
    for table, columns in JSON_COLUMNS.items():
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ) as batch:
            for column in columns:
                batch.alter_column(column, type_=json_type)


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild(sa.Text(), autoincrement=True)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild(sa.JSON(), autoincrement=False)
