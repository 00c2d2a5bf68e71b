"""Configurations, feature flags and their audit history.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
UTF8: dict[str, Any] = {"mysql_charset": "utf8mb4", "mariadb_charset": "utf8mb4"}


def upgrade() -> None:
    op.create_table(
        "app_configurations",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("config_key", sa.String(200), nullable=False),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("service_name", sa.String(100), nullable=True),
        sa.Column("service_scope", sa.String(100), nullable=False),
        sa.Column("config_value", sa.JSON(), nullable=False),
        sa.Column("description", sa.String(1000), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_app_configurations"),
        sa.UniqueConstraint(
            "environment",
            "service_scope",
            "config_key",
            name="uq_app_configurations_environment_service_scope_config_key",
        ),
        **UTF8,
    )
    op.create_index(
        "ix_app_configurations_environment_config_key",
        "app_configurations",
        ["environment", "config_key"],
    )
    op.create_table(
        "feature_flags",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("flag_key", sa.String(200), nullable=False),
        sa.Column("flag_name", sa.String(200), nullable=False),
        sa.Column("description", sa.String(1000), nullable=True),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("is_enabled", sa.Boolean(), nullable=False),
        sa.Column("rollout_percentage", sa.SmallInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_feature_flags"),
        sa.UniqueConstraint("environment", "flag_key", name="uq_feature_flags_environment_flag_key"),
        **UTF8,
    )
    op.create_table(
        "config_history",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("item_kind", sa.String(16), nullable=False),
        sa.Column("item_id", sa.BigInteger(), nullable=False),
        sa.Column("item_key", sa.String(200), nullable=False),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("service_name", sa.String(100), nullable=True),
        sa.Column("service_scope", sa.String(100), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("old_state", sa.JSON(), nullable=True),
        sa.Column("new_state", sa.JSON(), nullable=True),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("changed_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_config_history"),
        **UTF8,
    )
    op.create_index(
        "ix_config_history_item_kind_item_id_version",
        "config_history",
        ["item_kind", "item_id", "version"],
    )
    op.create_index(
        "ix_config_history_scope_key_version",
        "config_history",
        ["item_kind", "environment", "service_scope", "item_key", "version"],
    )


def downgrade() -> None:
    op.drop_table("config_history")
    op.drop_table("feature_flags")
    op.drop_table("app_configurations")
