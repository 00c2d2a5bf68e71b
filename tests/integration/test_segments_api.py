"""Segments (issue 10) through the API on SQLite and MariaDB: CRUD, ETags and If-Match,
history across a delete, validation, the in-use 409, the per-environment limit, and the one
change event each write queues."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from database.engine import make_engine, make_sessions
from database.uow import SqlUnitOfWork
from service.app import create_app
from service.errors import InUse
from service.principal import ANONYMOUS
from service.settings import Settings
from service.usecases import flags, segments

API = "/api/v1/segments"
FLAGS = "/api/v1/feature-flags"
BETA = {"context_name": "userId", "operator": "STR_STARTS_WITH", "values": ["beta-"]}
DE = {"context_name": "country", "operator": "IN", "values": ["DE"]}
DEFAULTS = {"inverted": False, "case_insensitive": False, "value": None}


def create(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post(f"{API}/", json=body)
    assert response.status_code == 201, response.text
    assert response.headers["etag"] == f'"{response.json()["version"]}"'
    return response.json()  # type: ignore[no-any-return]


def problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:aurora-config:problem:{slug}", body
    return body


def test_create_read_list_update_delete_and_history(client: TestClient) -> None:
    made = create(client, name="beta-testers", description="early", constraints=[BETA])
    assert made["version"] == 1
    assert (made["name"], made["environment"], made["description"]) == (
        "beta-testers",
        "production",
        "early",
    )
    assert made["constraints"] == [BETA | DEFAULTS]
    got = client.get(f"{API}/beta-testers")
    assert (got.status_code, got.headers["etag"], got.json()) == (200, '"1"', made)
    create(client, name="a", environment="staging")
    everything = client.get(f"{API}/").json()
    assert [(s["environment"], s["name"]) for s in everything["items"]] == [
        ("production", "beta-testers"),
        ("staging", "a"),
    ]
    production = client.get(f"{API}/", params={"environment": "production", "limit": 1}).json()
    assert (production["total"], len(production["items"])) == (1, 1)

    stale = client.put(
        f"{API}/beta-testers", json={"description": "x"}, headers={"If-Match": '"9"'}
    )
    problem(stale, 412, "version-mismatch")
    updated = client.put(
        f"{API}/beta-testers", json={"constraints": [BETA, DE]}, headers={"If-Match": '"1"'}
    )
    assert (updated.status_code, updated.headers["etag"]) == (200, '"2"')
    assert updated.json()["constraints"] == [BETA | DEFAULTS, DE | DEFAULTS]
    assert updated.json()["description"] == "early"  # not sent: unchanged
    same = client.put(f"{API}/beta-testers", json={"constraints": [BETA, DE]})
    assert same.json()["version"] == 2  # nothing changed: no new version

    problem(
        client.delete(f"{API}/beta-testers", headers={"If-Match": '"1"'}), 412, "version-mismatch"
    )
    gone = client.delete(f"{API}/beta-testers", headers={"If-Match": '"2"'})
    assert gone.status_code == 204, gone.text
    problem(client.get(f"{API}/beta-testers"), 404, "not-found")
    problem(client.delete(f"{API}/beta-testers"), 404, "not-found")
    history = client.get(f"{API}/beta-testers/history").json()
    assert [(h["version"], h["action"], h["key"]) for h in history] == [
        (3, "delete", "beta-testers"),
        (2, "update", "beta-testers"),
        (1, "create", "beta-testers"),
    ]
    assert history[1]["old_state"]["constraints"] == [BETA | DEFAULTS]
    assert history[1]["new_state"]["constraints"] == [BETA | DEFAULTS, DE | DEFAULTS]
    assert history[0]["new_state"] is None
    # A re-created name continues its versions, and its history its story.
    assert create(client, name="beta-testers")["version"] == 4
    problem(client.get(f"{API}/never/history"), 404, "not-found")
    problem(client.get(f"{API}/a/history"), 404, "not-found")  # it is staging's
    assert len(client.get(f"{API}/a/history", params={"environment": "staging"}).json()) == 1


def test_names_are_unique_per_environment_exact_and_may_be_unicode(client: TestClient) -> None:
    create(client, name="beta")
    problem(client.post(f"{API}/", json={"name": "beta"}), 409, "already-exists")
    create(client, name="beta", environment="staging")
    for name in ("Beta", "BETA", "bêta", "🚀", "🎉", "Hellø Wørld"):
        create(client, name=name, description=name)
    for name in ("beta", "Beta", "🚀", "🎉", "Hellø Wørld"):
        shown = client.get(f"{API}/{quote(name)}").json()
        assert shown["name"] == name
    for bad in ("a/b", "", ".", "..", "tab\tname", "x" * 201, "rtl\u202e"):
        problem(client.post(f"{API}/", json={"name": bad}), 422, "invalid-input")
    problem(client.get(f"{API}/bad%09name"), 422, "invalid-input")


def test_constraints_that_could_never_work_are_422_with_pointers(client: TestClient) -> None:
    bad = {"context_name": "v", "operator": "SEMVER_GT", "value": "not.a.version"}
    refused = problem(
        client.post(f"{API}/", json={"name": "s", "constraints": [BETA, bad]}),
        422,
        "invalid-targeting",
    )
    assert [e["pointer"] for e in refused["errors"]] == ["/constraints/1/value"]
    assert "/constraints/1/value" in refused["detail"]
    create(client, name="s")
    unknown = {"context_name": "v", "operator": "LIKE", "values": ["x"]}
    update = client.put(f"{API}/s", json={"constraints": [unknown]})
    assert [e["pointer"] for e in problem(update, 422, "invalid-targeting")["errors"]] == [
        "/constraints/0/operator"
    ]
    problem(
        client.post(f"{API}/", json={"name": "t", "constraints": [BETA | {"x": 1}]}),
        422,
        "invalid-input",
    )
    problem(client.put(f"{API}/s", json={}), 422, "invalid-input")
    assert client.get(f"{API}/s").json()["version"] == 1


def test_a_segment_that_rules_name_cannot_be_deleted(client: TestClient) -> None:
    create(client, name="beta", constraints=[BETA])
    create(client, name="other")
    rules = {"rules": [{"constraints": [DE]}, {"segments": ["other", "beta"]}]}
    for key in ("zeta", "alpha"):
        assert client.post(f"{FLAGS}/", json={"flag_key": key}).status_code == 201
        assert client.put(f"{FLAGS}/rules/{key}", json=rules).status_code == 200
    # Staging's own "beta" and the flag naming it there hold only staging's segment.
    create(client, name="beta", environment="staging")
    staged = {"flag_key": "staged", "environment": "staging", "rules": [{"segments": ["beta"]}]}
    assert client.post(f"{FLAGS}/", json=staged).status_code == 201
    refused = problem(client.delete(f"{API}/beta"), 409, "in-use")
    assert refused["flags"] == ["alpha", "zeta"]
    assert "'alpha', 'zeta'" in refused["detail"]
    assert client.get(f"{API}/beta").json()["version"] == 1
    assert client.put(f"{FLAGS}/rules/alpha", json={"rules": []}).status_code == 200
    assert problem(client.delete(f"{API}/beta"), 409, "in-use")["flags"] == ["zeta"]
    zeta = client.get(f"{FLAGS}/key/zeta").json()["id"]
    assert client.delete(f"{FLAGS}/{zeta}").status_code == 204
    assert client.delete(f"{API}/beta").status_code == 204
    assert client.delete(f"{API}/other").status_code == 204
    in_staging = client.delete(f"{API}/beta", params={"environment": "staging"})
    assert problem(in_staging, 409, "in-use")["flags"] == ["staged"]


@pytest.fixture
def limited(settings: Settings) -> Iterator[TestClient]:
    tight = settings.model_copy(update={"max_segments_per_environment": 2})
    with TestClient(create_app(tight)) as test_client:
        yield test_client


def test_more_segments_than_the_limit_is_a_422_naming_it(limited: TestClient) -> None:
    create(limited, name="a")
    create(limited, name="b")
    over = problem(limited.post(f"{API}/", json={"name": "c"}), 422, "limit-exceeded")
    assert over["limit"] == "AURORA_MAX_SEGMENTS_PER_ENVIRONMENT"
    assert "AURORA_MAX_SEGMENTS_PER_ENVIRONMENT" in over["detail"]
    create(limited, name="c", environment="staging")  # per environment
    assert limited.delete(f"{API}/a").status_code == 204
    create(limited, name="c")


def test_each_write_is_one_segment_change_event(database_url: str) -> None:
    engine = make_engine(database_url)
    sessions = make_sessions(engine)
    try:
        created = SqlUnitOfWork(sessions)
        segment = segments.create(
            created,
            env="production",
            name="🚀 beta",
            description=None,
            constraints=[BETA],
            actor=ANONYMOUS,
            max_segments=10,
        )
        ((_, event, _shard, sequence),) = created.published
        assert (event.kind, event.op, event.key, event.environment) == (
            "segment",
            "upsert",
            "🚀 beta",
            "production",
        )
        assert (event.service_name, event.version, sequence) == (None, 1, 1)
        assert event.state == segment.snapshot()
        assert event.state["constraints"] == [BETA | DEFAULTS]
        deleted = SqlUnitOfWork(sessions)
        segments.delete(deleted, "production", "🚀 beta", if_match=None, actor=ANONYMOUS)
        ((_, gone, _shard, _sequence),) = deleted.published
        assert (gone.kind, gone.op, gone.key, gone.version, gone.state) == (
            "segment",
            "delete",
            "🚀 beta",
            2,
            None,
        )
    finally:
        engine.dispose()


@pytest.mark.mariadb
def test_a_delete_waits_for_a_rule_write_holding_the_segment_and_then_sees_it(
    mariadb_url: str,
) -> None:
    """A flag write that names a segment holds it locked until it commits (flags._checked); a
    delete of that segment waits for it, then finds the flag and refuses (409), instead of
    deleting a segment a committed rule names. The rule write is played by hand here, so the
    delete is seen waiting before it is let go."""
    engine = make_engine(mariadb_url)
    sessions = make_sessions(engine)
    try:
        segments.create(
            SqlUnitOfWork(sessions),
            env="production",
            name="s",
            description=None,
            constraints=[],
            actor=ANONYMOUS,
            max_segments=10,
        )
        flags.create(
            SqlUnitOfWork(sessions),
            env="production",
            key="f",
            name="f",
            description=None,
            is_enabled=True,
            rollout_percentage=100,
            actor=ANONYMOUS,
        )
        with engine.connect() as writer, ThreadPoolExecutor(1) as pool:
            writer.execute(text("SELECT id FROM segments WHERE name = 's' FOR UPDATE"))
            writer.execute(
                text("UPDATE feature_flags SET rules = :rules WHERE flag_key = 'f'"),
                {"rules": '[{"id": "r1", "segments": ["s"]}]'},
            )
            deleting = pool.submit(
                segments.delete,
                SqlUnitOfWork(sessions),
                "production",
                "s",
                if_match=None,
                actor=ANONYMOUS,
            )
            wait_for_the_locked_read(engine)
            assert not deleting.done()
            writer.commit()
            with pytest.raises(InUse) as refused:
                deleting.result(timeout=30)
        assert refused.value.flags == ["f"]
    finally:
        engine.dispose()


def wait_for_the_locked_read(engine: Engine, within: float = 10.0) -> None:
    """Until the delete's locking read of the segment is in flight (it cannot finish while the
    rule write holds the row; MariaDB shows it in the processlist, in state 'Statistics')."""
    deadline = time.monotonic() + within
    with engine.connect() as probe:
        while time.monotonic() < deadline:
            waiting = probe.execute(
                text(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE COMMAND = 'Query'"
                    " AND INFO LIKE '%FROM segments%FOR UPDATE' AND ID <> CONNECTION_ID()"
                )
            ).scalar()
            if waiting:
                return
            time.sleep(0.01)
    raise AssertionError("the delete never read the segment")
