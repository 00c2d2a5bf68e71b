"""The readiness policy (service/readiness.py `assess`) over its state table, and its log: one
line per change of state, none while the state holds (issue #9, item 4)."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from database.migrations import SchemaRevision
from service.readiness import Facts, ReplicaState, StateLog, Status, assess

HEAD = "0004"
AT_HEAD = SchemaRevision(HEAD, HEAD, known=True)
ENVS = ("staging", "production")


def trusted(*untrusted: str) -> dict[str, ReplicaState]:
    return {env: "untrusted" if env in untrusted else "verified" for env in ENVS}


ALL_WELL = Facts(database=True, schema=AT_HEAD, redis=True, feed_connected=True, replicas=trusted())
NO_FEED = {"feed_connected": False, "replicas": trusted(*ENVS)}

# (case, changes to ALL_WELL, status, a phrase every reason set must contain)
TABLE: list[tuple[str, dict[str, object], Status, str]] = [
    ("everything works", {}, "ready", ""),
    (
        "empty database",
        {"schema": SchemaRevision(None, HEAD, known=False), **NO_FEED},
        "unavailable",
        "python -m service migrate",
    ),
    (
        "older schema revision",
        {"schema": SchemaRevision("0003", HEAD, known=True)},
        "unavailable",
        "at revision 0003, this version needs 0004: run `python -m service migrate`",
    ),
    (
        "newer schema (rolling upgrade)",
        {"schema": SchemaRevision("0005", HEAD, known=False)},
        "degraded",
        "newer",
    ),
    ("database down, replica trusted", {"database": False, "schema": None}, "degraded", "replica"),
    (
        "database down, replica followed but not provable",
        {"database": False, "schema": None, "replicas": dict.fromkeys(ENVS, "trusted")},
        "degraded",
        "replica (as it is)",
    ),
    (
        "replica trusted, proof pending after the database returned",
        {"replicas": {"staging": "trusted", "production": "verified"}},
        "ready",
        "",
    ),
    (
        "database down, one replica untrusted",
        {"database": False, "schema": None, "replicas": trusted("staging")},
        "unavailable",
        "replica of staging is not trusted",
    ),
    ("Redis down, database up", {"redis": False, **NO_FEED}, "degraded", "from the database"),
    (
        "Redis and database down",
        {"redis": False, "database": False, "schema": None, **NO_FEED},
        "unavailable",
        "nothing can serve",
    ),
    ("feed disconnected, Redis up", NO_FEED, "unavailable", "change feed is not connected"),
    (
        "one replica resynchronising",
        {"replicas": trusted("production")},
        "degraded",
        "replica of production is not trusted",
    ),
    (
        "schema missing while the database is down: not known, the outage decides",
        {"database": False, "schema": None, **NO_FEED},
        "unavailable",
        "does not answer",
    ),
]


@pytest.mark.parametrize(("case", "changes", "status", "phrase"), TABLE, ids=[t[0] for t in TABLE])
def test_each_state_has_its_status_and_reason(
    case: str, changes: dict[str, object], status: Status, phrase: str
) -> None:
    got, reasons = assess(replace(ALL_WELL, **changes))  # type: ignore[arg-type]
    assert got == status, case
    if status == "ready":
        assert reasons == ()
    else:
        assert reasons, "a status other than ready always says why"
        assert phrase in " ".join(reasons)


def test_a_missing_schema_is_the_only_reason_given() -> None:
    """The feed cannot connect without a schema either; saying so would send the operator after
    the wrong fault."""
    _, reasons = assess(
        replace(ALL_WELL, schema=SchemaRevision(None, HEAD, known=False), **NO_FEED)  # type: ignore[arg-type]
    )
    assert len(reasons) == 1


def test_state_changes_are_logged_once_each(caplog: pytest.LogCaptureFixture) -> None:
    changes = StateLog()
    caplog.set_level(logging.INFO, logger="service.readiness")
    for facts in (
        ALL_WELL,
        ALL_WELL,
        replace(ALL_WELL, database=False, schema=None),
        replace(ALL_WELL, database=False, schema=None),
        replace(ALL_WELL, database=False, schema=None, redis=False, **NO_FEED),  # type: ignore[arg-type]
        replace(ALL_WELL, database=False, schema=None, redis=False, **NO_FEED),  # type: ignore[arg-type]
        ALL_WELL,
    ):
        changes.observe(*assess(facts))
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(" (was")[0] for line in lines] == [
        "readiness: ready",
        "readiness: degraded, still serving",
        "readiness: NOT READY, 503",
        "readiness: ready",
    ]
    assert "the database does not answer" in lines[1]
    assert all(r.exc_info is None for r in caplog.records)
