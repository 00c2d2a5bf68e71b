"""Health, readiness, status, docs, and what a dead database does to requests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from tests.conftest import make_settings

# Nothing listens on port 1: connecting fails at once, like a database that is down.
DEAD_MYSQL = "mysql+pymysql://root@127.0.0.1:1/aurora"


def test_liveness_and_readiness(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/health/live").json() == {"status": "ok"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    body = ready.json()
    assert (body["status"], body["reasons"], body["database"], body["redis"]) == (
        "ready",
        [],
        "ok",
        "ok",
    )
    assert body["schema_revision"]["state"] == "current"
    assert body["schema_revision"]["current"] == body["schema_revision"]["head"]
    assert body["feed"] == "connected"
    # `verified` once the feed has proven it against the database (a fresh build: within 5 s)
    assert set(body["replica"]) == {"development", "staging", "production"}
    assert set(body["replica"].values()) <= {"verified", "trusted"}


def test_status_reports_counts_and_backends(client: TestClient, database_url: str) -> None:
    client.post("/api/v1/configurations/", json={"config_key": "a", "config_value": 1})
    client.post("/api/v1/feature-flags/", json={"flag_key": "f"})
    status = client.get("/status").json()
    assert status["counts"] == {"configurations": 1, "feature_flags": 1}
    backend = database_url.split("+", maxsplit=1)[0].split(":", maxsplit=1)[0]
    assert status["backends"]["database"] == backend
    assert status["read_model"]["feed_connected"] is True
    production = status["read_model"]["replica"]["production"]
    assert production["trusted"] is True
    assert (production["configs"], production["flags"]) == (1, 1)
    assert production["lag"] == 0
    assert status["outbox"]["pending"] == 0
    assert status["environments"] == ["development", "staging", "production"]
    assert status["uptime_seconds"] >= 0


def test_docs_list_every_endpoint(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    assert client.get("/redoc").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/v1/configurations/",
        "/api/v1/configurations/{config_id}",
        "/api/v1/configurations/key/{key}",
        "/api/v1/configurations/value/{key}",
        "/api/v1/configurations/{config_id}/history",
        "/api/v1/configurations/bulk",
        "/api/v1/feature-flags/",
        "/api/v1/feature-flags/{flag_id}",
        "/api/v1/feature-flags/key/{key}",
        "/api/v1/feature-flags/evaluate/{key}",
        "/api/v1/feature-flags/check/{key}",
        "/api/v1/feature-flags/toggle/{key}",
        "/api/v1/feature-flags/rollout/{key}",
        "/api/v1/feature-flags/{flag_id}/history",
        "/api/v1/feature-flags/bulk",
        "/health/ready",
        "/status",
    ):
        assert path in paths, path


@pytest.fixture
def dead_database_client() -> Iterator[TestClient]:
    settings = make_settings(DEAD_MYSQL, db_timeout_seconds=1.0)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def test_readiness_is_503_with_a_reason_when_the_database_is_down(
    dead_database_client: TestClient,
) -> None:
    assert dead_database_client.get("/health/live").status_code == 200
    ready = dead_database_client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"
    assert ready.json()["database"].startswith("unavailable")


def test_requests_get_503_not_500_when_the_database_is_down(
    dead_database_client: TestClient,
) -> None:
    write = dead_database_client.post(
        "/api/v1/configurations/", json={"config_key": "k", "config_value": 1}
    )
    assert write.status_code == 503
    assert write.headers["content-type"] == "application/problem+json"
    assert write.headers["retry-after"] == "1"
    assert "database is unavailable" in write.json()["detail"]
    assert dead_database_client.get("/api/v1/feature-flags/check/f").status_code == 503
    assert dead_database_client.get("/status").status_code == 200
