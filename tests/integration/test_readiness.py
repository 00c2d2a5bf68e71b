"""/health/ready tells the truth against the real MariaDB and Redis (issue #9, item 4): every
state of the readiness table, with faults made by cutting TCP proxies, and one log line per
change of state instead of a traceback every two seconds.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from alembic import command
from fastapi.testclient import TestClient
from redis.asyncio import Redis

from database.engine import make_engine
from database.migrations import alembic_config, head_revision, upgrade_to_head
from service import runtime
from service.settings import Settings
from tests.backends import MARIADB_PORT, REDIS_PORT, eventually, redis_url, throwaway_mariadb
from tests.conftest import start_app
from tests.faults import TcpProxy, proxy_to

pytestmark = pytest.mark.mariadb

ENVS = ("development", "staging", "production")
FLAGS = "/api/v1/feature-flags"


def start(database_url: str, prefix: str, redis_at: str | None = None, **extra: Any) -> TestClient:
    """Instances that notice a fault within a second, and start serving without waiting."""
    return start_app(
        database_url,
        prefix,
        redis_at,
        **({"relay_interval_seconds": 0.1, "replica_wait_seconds": 1.0} | extra),
    )


def readiness(client: TestClient) -> tuple[int, dict[str, Any]]:
    answer = client.get("/health/ready")
    return answer.status_code, answer.json()


def through(proxy: TcpProxy, url: str, port: int) -> str:
    return url.replace(f"127.0.0.1:{port}", f"127.0.0.1:{proxy.port}")


def readiness_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "service.readiness"]


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.exc_info]


@pytest.fixture
def empty_database() -> Iterator[str]:
    with throwaway_mariadb("ready") as url:
        yield url


def test_an_empty_database_is_not_ready_and_says_to_migrate_without_a_traceback_loop(
    empty_database: str, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with start(empty_database, redis_prefix) as client:
        status, body = readiness(client)
        assert status == 503
        assert body["status"] == "unavailable"
        assert "python -m service migrate" in body["reasons"][0]
        assert body["database"] == "ok"
        assert body["schema_revision"] == {
            "current": None,
            "head": head_revision(),
            "state": "missing",
        }
        write = client.post(f"{FLAGS}/", json={"flag_key": "f"})
        assert write.status_code == 503
        assert write.json()["type"] == "urn:aurora-config:problem:schema-not-ready"
        assert "python -m service migrate" in write.json()["detail"]

        # The feed and the relay keep trying: let them, then look at what they logged.
        def feed_retried_twice() -> bool:
            failures = [r for r in caplog.records if r.name == "cache.feed" and r.levelno >= 30]
            return len(failures) >= 2

        eventually(feed_retried_twice, what="the feed to retry its rebuild twice")
        assert tracebacks(caplog) == []
        assert [line.split(" (was")[0] for line in readiness_lines(caplog)] == [
            "readiness: NOT READY, 503"
        ]
        assert [r for r in caplog.records if r.name.startswith("alembic")] == []  # the checks

        # The operator migrates: readiness follows within the schema re-check, and says so once.
        engine = make_engine(empty_database)
        upgrade_to_head(engine)
        engine.dispose()
        eventually(lambda: readiness(client)[0] == 200, what="ready once migrated")
        eventually(lambda: readiness(client)[1]["status"] == "ready", what="replicas trusted")
        assert client.post(f"{FLAGS}/", json={"flag_key": "f"}).status_code == 201
        assert readiness_lines(caplog)[-1].startswith("readiness: ready")
        assert tracebacks(caplog) == []


def test_an_older_schema_revision_is_not_ready(empty_database: str, redis_prefix: str) -> None:
    engine = make_engine(empty_database)
    with engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "0003")
    engine.dispose()
    with start(empty_database, redis_prefix) as client:
        status, body = readiness(client)
        assert (status, body["status"]) == (503, "unavailable")
        assert body["schema_revision"] == {
            "current": "0003",
            "head": head_revision(),
            "state": "behind",
        }
        assert body["reasons"] == [
            f"the database schema is at revision 0003, this version needs {head_revision()}: "
            "run `python -m service migrate`"
        ]


def test_database_down_with_a_trusted_replica_is_degraded_and_both_down_is_not_ready(
    mariadb_database: str, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="service.readiness")
    with proxy_to(MARIADB_PORT) as db, proxy_to(REDIS_PORT) as redis:
        database_url = through(db, mariadb_database, MARIADB_PORT)
        with start(database_url, redis_prefix, redis_at=redis_url(port=redis.port)) as client:
            assert readiness(client)[1]["status"] == "ready"
            db.cut()
            status, body = readiness(client)
            assert (status, body["status"]) == (200, "degraded")
            assert body["database"].startswith("unavailable")
            assert body["schema_revision"]["state"] == "unknown"
            assert (body["redis"], body["feed"]) == ("ok", "connected")
            # trusted, and `verified` until a proof against the database is due and fails
            assert set(body["replica"]) == set(ENVS)
            assert set(body["replica"].values()) <= {"verified", "trusted"}
            assert "reads come from the replica" in body["reasons"][0]

            redis.cut()
            eventually(lambda: readiness(client)[0] == 503, what="not ready with both down")
            status, body = readiness(client)
            assert body["status"] == "unavailable"
            assert body["redis"].startswith("unavailable")
            assert body["feed"] == "disconnected"
            assert body["replica"] == dict.fromkeys(ENVS, "untrusted")
            assert "nothing can serve their reads" in body["reasons"][0]

            db.restore()
            redis.restore()
            eventually(lambda: readiness(client)[1]["status"] == "ready", what="ready again")
            eventually(
                lambda: readiness(client)[1]["replica"] == dict.fromkeys(ENVS, "verified"),
                within=15.0,  # the feed proves each environment every 5 s
                what="every replica proven against the database again",
            )
    # One line per change of state: a status or its reasons changed between any two lines.
    states = [re.sub(r" \(was \w+\)", "", line) for line in readiness_lines(caplog)]
    assert all(a != b for a, b in itertools.pairwise(states)), states
    lines = [line.split(" (was")[0] for line in readiness_lines(caplog)]
    assert lines[:3] == [
        "readiness: ready",
        "readiness: degraded, still serving",
        "readiness: NOT READY, 503",
    ]
    assert lines[-1] == "readiness: ready"


def test_redis_down_with_the_database_up_is_degraded(
    mariadb_database: str, redis_prefix: str
) -> None:
    with (
        proxy_to(REDIS_PORT) as redis,
        start(mariadb_database, redis_prefix, redis_at=redis_url(port=redis.port)) as client,
    ):
        assert readiness(client)[1]["status"] == "ready"
        redis.cut()
        eventually(lambda: readiness(client)[1]["feed"] == "disconnected", what="the feed to drop")
        status, body = readiness(client)
        assert (status, body["status"]) == (200, "degraded")
        assert body["redis"].startswith("unavailable")
        assert (body["database"], body["schema_revision"]["state"]) == ("ok", "current")
        assert body["reasons"] == [
            "Redis does not answer: reads come from the database, writes answer `pending`, "
            "streams are refused"
        ]
        redis.restore()
        eventually(lambda: readiness(client)[1]["status"] == "ready", what="ready again")


@pytest.fixture
def feed_proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[TcpProxy]:
    """The change feed's own Redis connection goes through a proxy; commands go straight to
    Redis. Cutting it is a subscription lost while Redis answers (a dropped NAT entry, a feed
    stuck in a rebuild): a fault of this instance alone."""
    build: Callable[[Settings, str], tuple[Redis, Redis, list[Redis]]] = runtime.redis_clients
    with proxy_to(REDIS_PORT) as proxy:

        def clients(settings: Settings, instance: str) -> tuple[Redis, Redis, list[Redis]]:
            commands, feed, helpers = build(settings, instance)
            cut_able = settings.model_copy(update={"redis_url": redis_url(port=proxy.port)})
            _, feed_through_proxy, _ = build(cut_able, instance)
            return commands, feed_through_proxy, [*helpers, feed]

        monkeypatch.setattr(runtime, "redis_clients", clients)
        yield proxy


def test_a_disconnected_change_feed_is_not_ready_though_redis_answers(
    mariadb_database: str, redis_prefix: str, feed_proxy: TcpProxy
) -> None:
    with start(mariadb_database, redis_prefix) as client:
        assert readiness(client)[1]["status"] == "ready"
        feed_proxy.cut()
        eventually(lambda: readiness(client)[0] == 503, what="not ready without the feed")
        _, body = readiness(client)
        assert body["status"] == "unavailable"
        assert (body["database"], body["redis"], body["feed"]) == ("ok", "ok", "disconnected")
        assert "change feed is not connected" in body["reasons"][0]
        # What a load balancer spares its SSE clients: this instance refuses streams.
        stream = client.get("/api/v1/stream", params={"environment": "production"})
        assert stream.status_code == 503
        feed_proxy.restore()
        eventually(lambda: readiness(client)[1]["status"] == "ready", what="ready again")


def test_migrate_on_start_brings_an_empty_database_to_ready(
    empty_database: str, redis_prefix: str
) -> None:
    with start(empty_database, redis_prefix, migrate_on_start=True) as client:
        eventually(lambda: readiness(client)[1]["status"] == "ready", what="ready")
        assert readiness(client)[1]["schema_revision"]["state"] == "current"
