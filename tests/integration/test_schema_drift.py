"""database/schema.sql, the Alembic migrations and the models describe one schema (no drift)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from database.engine import make_engine
from database.migrations import upgrade_to_head
from database.models import Base, Configuration, utcnow
from tests.backends import throwaway_mariadb

SCHEMA_SQL = Path(__file__).resolve().parents[2] / "database" / "schema.sql"


def apply_schema_sql(engine: Engine) -> None:
    code = "\n".join(
        line for line in SCHEMA_SQL.read_text().splitlines() if not line.strip().startswith("--")
    )
    statements = [statement for statement in code.split(";") if statement.strip()]
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))


def compare_type(
    _ctx: Any, inspected: Any, _metadata: Any, inspected_type: Any, metadata_type: Any
) -> bool | None:
    # MariaDB stores JSON as LONGTEXT (with a json_valid CHECK) and BOOL as TINYINT(1): the same
    # DDL reads back that way from schema.sql and from the migrations alike. Anything else is
    # compared by Alembic's default rules.
    if type(metadata_type).__name__ == "JSON" and "TEXT" in str(inspected_type).upper():
        return False
    return None


def drift(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": compare_type})
        return [
            d
            for d in compare_metadata(context, Base.metadata)
            if d[0] != "remove_table" or d[1].name != "alembic_version"
        ]


def shape(engine: Engine) -> dict[str, Any]:
    inspector = inspect(engine)
    tables = {}
    for table in sorted(inspector.get_table_names()):
        if table == "alembic_version":
            continue
        tables[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)
            ],
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in inspector.get_indexes(table)
            ),
            "unique": sorted(
                (u["name"], tuple(u["column_names"]))
                for u in inspector.get_unique_constraints(table)
            ),
            "pk": inspector.get_pk_constraint(table)["constrained_columns"],
        }
    return tables


@pytest.mark.mariadb
def test_schema_sql_and_migrations_match_the_models_on_mariadb() -> None:
    with throwaway_mariadb("sql") as by_sql_url, throwaway_mariadb("alembic") as by_alembic_url:
        by_sql, by_alembic = make_engine(by_sql_url), make_engine(by_alembic_url)
        try:
            apply_schema_sql(by_sql)
            upgrade_to_head(by_alembic)
            assert drift(by_sql) == []
            assert drift(by_alembic) == []
            assert shape(by_sql) == shape(by_alembic)
            assert set(shape(by_sql)) == {t.name for t in Base.metadata.sorted_tables}
        finally:
            by_sql.dispose()
            by_alembic.dispose()


def test_migrations_match_the_models_on_sqlite(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'drift.db'}")
    try:
        upgrade_to_head(engine)
        assert drift(engine) == []
    finally:
        engine.dispose()


def config(service: str | None, value: int) -> Configuration:
    now = utcnow()
    return Configuration(
        config_key="k",
        environment="production",
        service_name=service,
        service_scope=service or "",
        config_value=value,
        description=None,
        version=1,
        created_at=now,
        updated_at=now,
        created_by="t",
        updated_by="t",
    )


@pytest.mark.mariadb
def test_two_globals_with_one_key_cannot_exist_in_the_database() -> None:
    """Not only the API refuses it: the unique index does, although service_name is NULL."""
    with throwaway_mariadb("unique") as url:
        engine = make_engine(url)
        try:
            apply_schema_sql(engine)
            with Session(engine) as session:
                session.add_all([config(None, 1), config("svc", 2)])  # global + service: fine
                session.commit()
                session.add(config(None, 3))
                with pytest.raises(IntegrityError):
                    session.commit()
        finally:
            engine.dispose()
