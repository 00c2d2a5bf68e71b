"""database/schema.sql (what a DBA runs) and the Alembic migrations build exactly the tables that
database/models.py declares, and the database itself keeps one global value per key.

Alembic's own type comparison is too lenient on MySQL/MariaDB to be a drift check: it treats JSON
and LONGTEXT as synonyms and ignores a DATETIME's fractional precision, so a schema.sql with
`config_value LONGTEXT` (no JSON validation) or `created_at DATETIME` (microseconds silently
truncated, breaking time ordering) or a key column without `COLLATE utf8mb4_bin` (case- and
emoji-insensitive keys) would pass. `strict_types` below closes those holes, and
`test_the_drift_check_sees_what_alembic_defaults_miss` proves it does.
"""

from __future__ import annotations

import pprint
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import JSON, Boolean, Connection, DateTime, Engine, String, inspect, select, text
from sqlalchemy.dialects import mysql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from database.engine import make_engine
from database.migrations import alembic_config, schema_revision, upgrade_to_head
from database.models import Base, Configuration, FeatureFlag, scope_of, utcnow
from tests.backends import throwaway_mariadb

SCHEMA_SQL = Path(__file__).resolve().parents[2] / "database" / "schema.sql"
VERSION_TABLE = "alembic_version"
MYSQL_DUPLICATE_KEY = 1062

TypeRule = Callable[[Any, Any, Any, Any, Any], bool | None]


def schema_statements(sql: str) -> list[str]:
    """The statements of a DDL script: `--` comment lines dropped, split on ';'."""
    code = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [statement.strip() for statement in code.split(";") if statement.strip()]


def apply_sql(engine: Engine, sql: str) -> None:
    with engine.begin() as conn:
        for statement in schema_statements(sql):
            conn.execute(text(statement))


def json_columns(conn: Connection) -> frozenset[tuple[str, str]]:
    """(table, column) of every MariaDB JSON column. MariaDB's JSON is an alias: the column reads
    back as LONGTEXT, and only its CHECK (json_valid(`col`)) tells it from a plain LONGTEXT.
    SQLAlchemy does not reflect column-level checks, so ask information_schema."""
    if conn.dialect.name != "mysql" or not getattr(conn.dialect, "is_mariadb", False):
        return frozenset()
    rows = conn.execute(
        text(
            "SELECT TABLE_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS"
            " WHERE CONSTRAINT_SCHEMA = DATABASE()"
        )
    )
    found = set()
    for table, clause in rows:
        match = re.fullmatch(r"json_valid\(`([^`]+)`\)", clause.strip())
        if match:
            found.add((table, match.group(1)))
    return frozenset(found)


def strict_types(json_cols: frozenset[tuple[str, str]]) -> TypeRule:
    """Alembic's compare_type hook, strict where its MySQL defaults are lenient (see the module
    docstring). Returns True for drift, False for a match, None for Alembic's default rules."""

    def compare_type(
        context: MigrationContext,
        inspected_column: Any,
        _metadata_column: Any,
        inspected_type: Any,
        metadata_type: Any,
    ) -> bool | None:
        dialect = context.dialect
        if dialect.name != "mysql":
            return None  # SQLite: Alembic's rules are fine (types there are affinities anyway)
        expected = metadata_type.dialect_impl(dialect)  # resolves with_variant(...)
        where = (inspected_column.table.name, inspected_column.name)
        if isinstance(expected, JSON):
            # Native JSON on MySQL 8/TiDB; LONGTEXT + CHECK (json_valid) on MariaDB. A LONGTEXT
            # without the check accepts any text: that is drift, not a synonym.
            native = isinstance(inspected_type, JSON)
            emulated = isinstance(inspected_type, mysql.LONGTEXT) and where in json_cols
            return not (native or emulated)
        if isinstance(expected, DateTime):
            # DATETIME(6) vs DATETIME: the same type name, but the bare one drops microseconds.
            fsp = getattr(expected, "fsp", None)
            return not (isinstance(inspected_type, mysql.DATETIME) and inspected_type.fsp == fsp)
        if isinstance(expected, Boolean):
            # BOOL is TINYINT(1) on MySQL/MariaDB: a match, not drift. Another width means the
            # column was not declared BOOL.
            return not (
                isinstance(inspected_type, mysql.TINYINT) and inspected_type.display_width == 1
            )
        if isinstance(expected, String) and expected.collation != getattr(
            inspected_type, "collation", None
        ):
            # utf8mb4_bin vs the default collation: the same type to Alembic, but under the
            # default "Flag" and "flag" (or two emoji) are one key (issue 10).
            return True
        return None

    return compare_type


def drift(engine: Engine) -> list[Any]:
    """What Alembic would have to change to turn the live schema into Base.metadata."""
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": strict_types(json_columns(conn)),
                "compare_server_default": True,
            },
        )
        return compare_metadata(context, Base.metadata)


def assert_no_drift(engine: Engine) -> None:
    diffs = drift(engine)
    assert diffs == [], "schema differs from database/models.py:\n" + pprint.pformat(diffs)


def shape(engine: Engine) -> dict[str, Any]:
    """Tables, columns, keys, indexes and options as the database reports them."""
    inspector = inspect(engine)
    with engine.connect() as conn:
        json_cols = json_columns(conn)
    tables: dict[str, Any] = {}
    for table in inspector.get_table_names():
        if table == VERSION_TABLE:
            continue
        tables[table] = {
            "columns": sorted(
                (
                    column["name"],
                    repr(column["type"]),
                    column["nullable"],
                    column.get("default"),
                    column.get("autoincrement"),
                    (table, column["name"]) in json_cols,
                )
                for column in inspector.get_columns(table)
            ),
            "primary key": inspector.get_pk_constraint(table),
            "indexes": sorted(
                (index["name"], tuple(index["column_names"]), bool(index["unique"]))
                for index in inspector.get_indexes(table)
            ),
            "unique": sorted(
                (unique["name"], tuple(unique["column_names"]))
                for unique in inspector.get_unique_constraints(table)
            ),
            "options": inspector.get_table_options(table),
        }
    return tables


@pytest.fixture(scope="module")
def built_by_sql() -> Iterator[Engine]:
    with throwaway_mariadb("schema_sql") as url:
        engine = make_engine(url)
        try:
            apply_sql(engine, SCHEMA_SQL.read_text())
            yield engine
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def built_by_alembic() -> Iterator[Engine]:
    with throwaway_mariadb("schema_alembic") as url:
        engine = make_engine(url)
        try:
            upgrade_to_head(engine)
            yield engine
        finally:
            engine.dispose()


@pytest.mark.mariadb
def test_schema_sql_matches_the_models_on_mariadb(built_by_sql: Engine) -> None:
    assert_no_drift(built_by_sql)


@pytest.mark.mariadb
def test_migrations_match_the_models_on_mariadb(built_by_alembic: Engine) -> None:
    assert_no_drift(built_by_alembic)


def test_migrations_match_the_models_on_sqlite(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'schema.db'}")
    try:
        upgrade_to_head(engine)
        assert_no_drift(engine)
    finally:
        engine.dispose()


@pytest.mark.mariadb
def test_schema_sql_and_migrations_build_the_same_tables(
    built_by_sql: Engine, built_by_alembic: Engine
) -> None:
    by_sql, by_alembic = shape(built_by_sql), shape(built_by_alembic)
    assert set(by_sql) == {table.name for table in Base.metadata.sorted_tables}
    assert by_sql == by_alembic
    for table, described in by_sql.items():
        assert described["options"].get("mysql_default charset") == "utf8mb4", table


@pytest.mark.mariadb
def test_the_drift_check_sees_what_alembic_defaults_miss() -> None:
    """A schema.sql with a plain LONGTEXT for a JSON column, a bare DATETIME, a TINYINT(4) for
    a BOOL and a key column of the default collation, none of which Alembic's default comparison
    reports, fails the check above."""
    sql = SCHEMA_SQL.read_text()
    mutations = {
        "config_value JSON NOT NULL": "config_value LONGTEXT NOT NULL",
        "changed_at DATETIME(6) NOT NULL": "changed_at DATETIME NOT NULL",
        "is_enabled BOOL NOT NULL": "is_enabled TINYINT NOT NULL",
        "flag_key VARCHAR(200) COLLATE utf8mb4_bin NOT NULL": "flag_key VARCHAR(200) NOT NULL",
    }
    for before, after in mutations.items():
        assert sql.count(before) == 1, before
        sql = sql.replace(before, after)
    with throwaway_mariadb("schema_mutant") as url:
        engine = make_engine(url)
        try:
            apply_sql(engine, sql)
            with engine.connect() as conn:
                lenient = compare_metadata(MigrationContext.configure(conn), Base.metadata)
            changed = {
                (diff[2], diff[3])
                for group in drift(engine)
                for diff in (group if isinstance(group, list) else [group])
                if diff[0] == "modify_type"
            }
        finally:
            engine.dispose()
    assert lenient == []  # why strict_types exists
    assert changed == {
        ("app_configurations", "config_value"),
        ("config_history", "changed_at"),
        ("feature_flags", "is_enabled"),
        ("feature_flags", "flag_key"),
    }


def test_schema_sql_names_the_head_revision_to_stamp() -> None:
    """schema.sql tells a DBA which revision to stamp; it must be the migrations' head."""
    match = re.search(r"stamping the latest revision \((\w+)\)", SCHEMA_SQL.read_text())
    assert match is not None
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert match.group(1) == head


@pytest.mark.mariadb
def test_a_database_built_from_schema_sql_is_at_the_head_revision(built_by_sql: Engine) -> None:
    """Readiness needs the recorded revision (issue #9): schema.sql records the head's, so a DBA's
    database counts as migrated, and later migrations apply on top."""
    assert schema_revision(built_by_sql).verdict == "current"
    upgrade_to_head(built_by_sql)  # nothing to do, and no "table already exists"
    assert schema_revision(built_by_sql).verdict == "current"


def configuration(service: str | None, value: int) -> Configuration:
    now = utcnow()
    return Configuration(
        config_key="timeout",
        environment="production",
        service_name=service,
        service_scope=scope_of(service),
        config_value=value,
        description=None,
        version=1,
        created_at=now,
        updated_at=now,
        created_by="test",
        updated_by="test",
    )


@pytest.fixture(params=["built_by_sql", "built_by_alembic"])
def mariadb_schema(request: pytest.FixtureRequest) -> Engine:
    """Both ways of building the MariaDB schema; tests roll back, leaving the tables empty."""
    engine: Engine = request.getfixturevalue(request.param)
    return engine


@pytest.mark.mariadb
def test_two_globals_with_one_key_cannot_exist_in_the_database(mariadb_schema: Engine) -> None:
    """The unique index refuses it, although service_name is NULL (NULLs never clash)."""
    with Session(mariadb_schema) as session:
        session.add(configuration(None, 1))
        session.flush()
        session.add(configuration(None, 2))
        with pytest.raises(IntegrityError) as refused:
            session.flush()
        session.rollback()
    # A duplicate key, not some other integrity failure such as a NOT NULL column left empty.
    assert refused.value.orig.args[0] == MYSQL_DUPLICATE_KEY
    assert "uq_app_configurations_environment_service_scope_config_key" in str(refused.value)


@pytest.mark.mariadb
def test_a_global_and_a_service_value_of_one_key_coexist(mariadb_schema: Engine) -> None:
    with Session(mariadb_schema) as session:
        session.add_all([configuration(None, 1), configuration("billing", 2)])
        session.flush()
        rows = session.execute(
            select(Configuration.service_name, Configuration.config_value).where(
                Configuration.environment == "production", Configuration.config_key == "timeout"
            )
        ).all()
        session.rollback()
    assert sorted(rows, key=lambda row: row.service_name or "") == [(None, 1), ("billing", 2)]


def test_sqlite_databases_of_0003_upgrade_keeping_their_data(tmp_path: Path) -> None:
    """Migration 0004 rebuilds SQLite tables (TEXT JSON, AUTOINCREMENT) and keeps every row."""
    from alembic import command  # noqa: PLC0415

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        config = alembic_config()
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0003")
            now = utcnow().isoformat(sep=" ")
            for row_id, key, value in ((1, "k", '{"a": [1, 2.5]}'), (2, "j", "2.0")):
                conn.execute(
                    text(
                        "INSERT INTO app_configurations VALUES (:id, :key, 'production', NULL, '',"
                        " :value, NULL, 1, :now, :now, 'a', 'a')"
                    ).bindparams(id=row_id, key=key, value=value, now=now)
                )
        upgrade_to_head(engine)
        with Session(engine) as session:
            rows = session.scalars(select(Configuration).order_by(Configuration.id)).all()
            assert [(r.id, r.config_key, r.config_value) for r in rows] == [
                (1, "k", {"a": [1, 2.5]}),
                (2, "j", 2),  # coerced by NUMERIC affinity before 0004: read back as it was
            ]
            session.delete(rows[1])
            session.commit()
            fresh = configuration(None, 1)
            fresh.config_key, fresh.config_value = "new", 2.0
            session.add(fresh)
            session.commit()
            assert fresh.id == 3  # AUTOINCREMENT: id 2 is not handed out again
            session.expire_all()
            assert session.get(Configuration, 3).config_value == 2.0  # type: ignore[union-attr]
            assert type(session.get(Configuration, 3).config_value) is float  # type: ignore[union-attr]
        assert_no_drift(engine)
    finally:
        engine.dispose()


def flag(key: str) -> FeatureFlag:
    now = utcnow()
    return FeatureFlag(
        flag_key=key,
        flag_name=key,
        description=None,
        environment="production",
        is_enabled=True,
        rollout_percentage=100,
        version=1,
        created_at=now,
        updated_at=now,
        created_by="test",
        updated_by="test",
    )


# Distinct under utf8mb4_bin; one key under MariaDB's default utf8mb4_general_ci (case, accents,
# and every emoji weighing the same).
LOOKALIKES = ("Flag", "flag", "FLÄG", "flag\u0308", "🚀", "🎉", "Hellø_Wørld", "hello_world")


@pytest.mark.mariadb
def test_keys_differing_in_case_accents_or_emoji_are_distinct_items(
    mariadb_schema: Engine,
) -> None:
    with Session(mariadb_schema) as session:
        session.add_all([flag(key) for key in LOOKALIKES])
        for key in ("Flag", "flag", "🚀", "🎉"):
            config = configuration(None, 1)
            config.config_key = key
            session.add(config)
        session.flush()  # no duplicate key
        for key in LOOKALIKES:
            found = session.scalars(select(FeatureFlag).where(FeatureFlag.flag_key == key)).all()
            assert [f.flag_key for f in found] == [key]
        found_configs = session.scalars(
            select(Configuration.config_key).where(Configuration.config_key == "🎉")
        ).all()
        assert found_configs == ["🎉"]
        session.rollback()


def upgrade_from_0005(engine: Engine) -> None:
    """Build the schema of revision 0005 with one flag in it, then upgrade to head."""
    from alembic import command  # noqa: PLC0415

    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0005")
        now = utcnow().isoformat(sep=" ")
        conn.execute(
            text(
                "INSERT INTO feature_flags (flag_key, flag_name, environment, is_enabled,"
                " rollout_percentage, version, created_at, updated_at, created_by, updated_by)"
                " VALUES ('old', 'old', 'production', 1, 30, 4, :now, :now, 'a', 'a')"
            ).bindparams(now=now)
        )
    upgrade_to_head(engine)


def assert_old_flag_kept(engine: Engine) -> None:
    with Session(engine) as session:
        old = session.scalars(select(FeatureFlag)).one()
        assert (old.flag_key, old.rollout_percentage, old.version) == ("old", 30, 4)
        assert (old.rules, old.variants, old.prerequisites) == ([], [], [])


def test_sqlite_databases_of_0005_upgrade_giving_flags_no_rules(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        upgrade_from_0005(engine)
        assert_old_flag_kept(engine)
        assert_no_drift(engine)
        with Session(engine) as session:  # AUTOINCREMENT survived the table's rebuild
            session.delete(session.scalars(select(FeatureFlag)).one())
            session.commit()
            fresh = flag("new")
            session.add(fresh)
            session.commit()
            assert fresh.id == 2
    finally:
        engine.dispose()


@pytest.mark.mariadb
def test_mariadb_databases_of_0005_upgrade_to_binary_keys_giving_flags_no_rules() -> None:
    with throwaway_mariadb("schema_0005") as url:
        engine = make_engine(url)
        try:
            upgrade_from_0005(engine)
            assert_old_flag_kept(engine)
            assert_no_drift(engine)
            with Session(engine) as session:
                session.add_all([flag("OLD"), flag("🚀"), flag("🎉")])
                session.flush()
                session.rollback()
        finally:
            engine.dispose()
