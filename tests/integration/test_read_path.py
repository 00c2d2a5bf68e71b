"""The read model in production shape: real MariaDB and real Redis (issue #4).

Reads are served from the replica with zero SQL once warm; Redis down falls back to SQL; the
database down leaves reads working; a cut subscription makes the replica untrusted until it has
resynchronised; Redis losing its data is rebuilt from the database; a change committed by a
process that died before publishing it is applied by the relay.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest
import redis
from aurora_client.events import ChangeEvent
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event

from database.uow import UnitOfWork
from service.principal import Principal
from service.usecases import configs
from tests.backends import REDIS_DB, REDIS_HOST, REDIS_PORT, delete_prefix, eventually, redis_url
from tests.conftest import start_app
from tests.faults import proxy_to

pytestmark = pytest.mark.mariadb

CONFIGS = "/api/v1/configurations"
FLAGS = "/api/v1/feature-flags"


@pytest.fixture
def raw_redis(redis_prefix: str) -> Iterator[redis.Redis]:
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)
    yield client
    client.close()


def start(database_url: str, prefix: str, redis_at: str | None = None, **extra: Any) -> TestClient:
    return start_app(database_url, prefix, redis_at, **extra)


def seed(client: TestClient) -> None:
    assert (
        client.post(f"{CONFIGS}/", json={"config_key": "timeout", "config_value": 30}).status_code
        == 201
    )
    own = {"config_key": "timeout", "config_value": 5, "service_name": "billing"}
    assert client.post(f"{CONFIGS}/", json=own).status_code == 201
    flag = {"flag_key": "beta", "is_enabled": True, "rollout_percentage": 100}
    assert client.post(f"{FLAGS}/", json=flag).status_code == 201


def app_of(client: TestClient) -> FastAPI:
    return client.app  # type: ignore[return-value]


def rebuilt_and_drained(client: TestClient, old_epoch: str) -> None:
    """Wait for the read model to be rebuilt under a new epoch, this instance's replica to trust
    it again, and every pending change to be applied."""
    replica = app_of(client).state.replica

    def rebuilt() -> bool:
        position = replica.position("production")
        return bool(position and position[0] != old_epoch and replica.copy("production"))

    eventually(rebuilt, what="a rebuilt read model under a new epoch")
    eventually(
        lambda: client.get("/status").json()["outbox"]["pending"] == 0, what="outbox drained"
    )


def count_sql(app: FastAPI) -> list[str]:
    """Statements the app sends from now on, except background work that runs on a timer
    whatever the requests are: the outbox relay (touches only change_outbox), the readiness
    check (`SELECT 1`, and the schema revision in alembic_version) and the feed's proof of the
    read model (change_sequences, and change_outbox)."""
    statements: list[str] = []
    background = ("change_outbox", "alembic_version", "change_sequences")

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement != "SELECT 1" and not any(table in statement for table in background):
            statements.append(statement)

    event.listen(app.state.store.engine, "before_cursor_execute", record)
    return statements


def test_reads_need_no_sql_once_warm(mariadb_url: str, redis_prefix: str) -> None:
    with start(mariadb_url, redis_prefix) as client:
        seed(client)
        statements = count_sql(app_of(client))
        value = client.get(f"{CONFIGS}/value/timeout", params={"service_name": "billing"})
        assert (value.json()["value"], value.json()["scope"]) == (5, "service")
        assert (
            client.get(f"{CONFIGS}/value/timeout", params={"service_name": "x"}).json()["value"]
            == 30
        )
        assert client.get(f"{CONFIGS}/key/timeout").json()["config_value"] == 30
        assert client.get(f"{CONFIGS}/bulk", params={"service_name": "billing"}).json() == {
            "timeout": 5
        }
        assert client.get(f"{FLAGS}/check/beta", params={"user_id": "7"}).json() == {
            "enabled": True
        }
        assert client.get(f"{FLAGS}/evaluate/beta").json()["reason"] == "FULL_ROLLOUT"
        assert client.get(f"{FLAGS}/key/beta").json()["version"] == 1
        assert client.get(f"{FLAGS}/bulk").json() == {"beta": True}
        for _ in range(200):  # a storm of lookups for keys that do not exist
            assert client.get(f"{CONFIGS}/value/missing").status_code == 404
            assert client.get(f"{FLAGS}/check/missing").status_code == 404
        assert statements == []
        assert app_of(client).state.reads.served["database"] == 0


SEGMENTS = "/api/v1/segments"


def test_targeted_reads_need_no_sql_and_follow_a_segment_change(
    mariadb_url: str, redis_prefix: str
) -> None:
    """Issue 10: a flag whose rule names a segment and a property, under a Unicode key, answered
    from the replica (compiled when the change arrived) with no SQL, the check on the fast path
    with `properties[NAME]=VALUE`; a change of the segment changes the answer at once."""
    key = "Hellø_Wørld|🚀"
    path = quote(key, safe="")
    with start(mariadb_url, redis_prefix) as client:
        users = [{"context_name": "userId", "operator": "IN", "values": ["7"]}]
        segment = {"name": "testers", "constraints": users}
        assert client.post(f"{SEGMENTS}/", json=segment).status_code == 201
        country = {"context_name": "country", "operator": "IN", "values": ["DE"]}
        rule = {"id": "de", "constraints": [country], "segments": ["testers"]}
        flag = {"flag_key": key, "is_enabled": True, "rules": [rule]}
        assert client.post(f"{FLAGS}/", json=flag).status_code == 201
        reads = app_of(client).state.reads
        statements = count_sql(app_of(client))

        def check(user: str, **properties: str) -> bool:
            params = {"user_id": user} | {f"properties[{n}]": v for n, v in properties.items()}
            answer = client.get(f"{FLAGS}/check/{path}", params=params)
            assert answer.status_code == 200, answer.text
            return bool(answer.json()["enabled"])

        assert check("7", country="DE")
        assert not check("7")
        assert not check("8", country="DE")
        assert reads.served["fast_path"] == 3
        evaluated = client.get(
            f"{FLAGS}/evaluate/{path}", params={"user_id": "7", "properties[country]": "DE"}
        ).json()
        assert (evaluated["flag_key"], evaluated["enabled"]) == (key, True)
        assert evaluated["reason"] == "ROLLOUT_IN"
        bulk = client.get(f"{FLAGS}/bulk", params={"user_id": "7", "properties[country]": "DE"})
        assert bulk.json() == {key: True}
        assert statements == []
        assert reads.served["database"] == 0

        update = {"constraints": [{**users[0], "values": ["8"]}]}
        assert client.put(f"{SEGMENTS}/testers", json=update).status_code == 200
        assert not check("7", country="DE")
        assert check("8", country="DE")


def test_status_shows_the_replicas_revision_and_lag(mariadb_url: str, redis_prefix: str) -> None:
    with start(mariadb_url, redis_prefix) as client:
        seed(client)
        replica = client.get("/status").json()["read_model"]["replica"]["production"]
        assert replica["trusted"] is True
        assert (replica["configs"], replica["flags"]) == (2, 1)
        assert replica["redis_revision"] == replica["revision"] == 3  # three changes applied
        assert replica["lag"] == 0


def test_a_write_is_readable_on_the_same_instance_before_it_answers(
    mariadb_url: str, redis_prefix: str
) -> None:
    with start(mariadb_url, redis_prefix) as client:
        seed(client)
        for percentage in range(0, 101, 10):
            written = client.put(f"{FLAGS}/rollout/beta", params={"percentage": percentage})
            assert written.headers["x-aurora-propagation"] == "complete"
            shown = client.get(f"{FLAGS}/evaluate/beta", params={"user_id": "u"}).json()
            assert shown["rollout_percentage"] == percentage
        assert app_of(client).state.reads.served["database"] == 0


def test_redis_down_reads_fall_back_to_sql_and_writes_stay_pending_until_it_returns(
    mariadb_url: str, redis_prefix: str, raw_redis: redis.Redis
) -> None:
    with (
        proxy_to(REDIS_PORT) as proxy,
        start(
            mariadb_url,
            redis_prefix,
            redis_at=redis_url(port=proxy.port),
            propagation_wait_seconds=0.3,
        ) as client,
    ):
        seed(client)
        proxy.cut()
        ready = client.get("/health/ready")
        assert (ready.status_code, ready.json()["status"]) == (200, "degraded")
        versions = []
        for percentage in (10, 20, 30):
            written = client.put(f"{FLAGS}/rollout/beta", params={"percentage": percentage})
            assert written.status_code == 200
            assert written.headers["x-aurora-propagation"] == "pending"
            versions.append(written.json()["version"])
        created = client.put(f"{CONFIGS}/key/new", json={"value": {"a": 1}})
        assert (created.status_code, created.headers["x-aurora-propagation"]) == (201, "pending")
        # reads answer from the database, correctly, while Redis is away
        started = time.monotonic()
        assert client.get(f"{FLAGS}/evaluate/beta").json()["rollout_percentage"] == 30
        assert client.get(f"{CONFIGS}/value/new").json()["value"] == {"a": 1}
        assert (
            client.get(f"{CONFIGS}/value/timeout", params={"service_name": "billing"}).json()[
                "value"
            ]
            == 5
        )
        for _ in range(20):  # the breaker is open: no request waits for the dead Redis
            assert client.get(f"{FLAGS}/check/beta", params={"user_id": "1"}).status_code == 200
        assert time.monotonic() - started < 5
        assert app_of(client).state.reads.served["database"] >= 3
        assert client.get("/status").json()["outbox"]["pending"] >= 4

        proxy.restore()
        flags_key = f"{redis_prefix}{{production}}:flags".encode()
        eventually(
            lambda: (
                raw_redis.hget(flags_key, "beta")
                and b'"rollout_percentage":30' in raw_redis.hget(flags_key, "beta")
            ),
            what="the pending changes to reach Redis",
        )
        eventually(
            lambda: client.get("/status").json()["outbox"]["pending"] == 0, what="outbox drained"
        )
        eventually(lambda: app_of(client).state.replica.copy("production"), what="replica trusted")
        assert client.get(f"{CONFIGS}/value/new").json()["value"] == {"a": 1}
        assert client.get("/health/ready").json()["status"] == "ready"


def test_database_down_reads_and_evaluations_keep_working(
    mariadb_url: str, redis_prefix: str
) -> None:
    host_port = mariadb_url.split("@", 1)[1].split("/", 1)[0]
    port = int(host_port.split(":")[1])
    with proxy_to(port) as proxy:
        through_proxy = mariadb_url.replace(host_port, f"127.0.0.1:{proxy.port}")
        with start(through_proxy, redis_prefix) as client:
            seed(client)
            proxy.cut()
            assert client.get(f"{FLAGS}/check/beta", params={"user_id": "1"}).json() == {
                "enabled": True
            }
            assert client.get(f"{CONFIGS}/value/timeout").json()["value"] == 30
            assert client.get(f"{CONFIGS}/bulk").json() == {"timeout": 30}
            write = client.put(f"{FLAGS}/rollout/beta", params={"percentage": 5})
            assert write.status_code == 503
            assert write.headers["content-type"] == "application/problem+json"
            assert "database" in write.json()["detail"]
            ready = client.get("/health/ready")  # reads are served: degraded, not out (#9)
            assert (ready.status_code, ready.json()["status"]) == (200, "degraded")
            proxy.restore()
            eventually(
                lambda: (
                    client.put(f"{FLAGS}/rollout/beta", params={"percentage": 5}).status_code == 200
                ),
                what="writes to work again",
            )


def test_tokens_cost_no_sql_per_request_and_outlive_a_database_outage(
    mariadb_url: str, redis_prefix: str
) -> None:
    """With authentication on (the default on a server database): once the tokens are loaded, a
    flood of made-up tokens and warm reads send no SQL; with the database down when a reload is
    due, the tokens last loaded keep working and made-up ones are still refused."""
    host_port = mariadb_url.split("@", 1)[1].split("/", 1)[0]
    admin_secret = "an-admin-secret-for-this-test"
    with proxy_to(int(host_port.split(":")[1])) as proxy:
        through_proxy = mariadb_url.replace(host_port, f"127.0.0.1:{proxy.port}")
        settings = {"auth": "enabled", "admin_token": admin_secret, "token_cache_seconds": 60}
        with start(through_proxy, redis_prefix, **settings) as client:
            admin = {"Authorization": f"Bearer {admin_secret}"}
            made = client.post(
                "/api/v1/tokens/", json={"name": "svc", "scopes": ["read"]}, headers=admin
            )
            reader = {"Authorization": f"Bearer {made.json()['token']}"}
            flag = {"flag_key": "beta", "is_enabled": True, "rollout_percentage": 100}
            assert client.post(f"{FLAGS}/", json=flag, headers=admin).status_code == 201
            assert client.get(f"{FLAGS}/check/beta", headers=reader).status_code == 200
            statements = count_sql(app_of(client))
            for i in range(200):
                made_up = {"Authorization": f"Bearer made-up-{i}"}
                assert client.get(f"{FLAGS}/check/beta", headers=made_up).status_code == 401
            for _ in range(50):
                assert client.get(f"{FLAGS}/check/beta", headers=reader).json() == {"enabled": True}
            assert statements == []
            proxy.cut()
            app_of(client).state.auth._fresh_until = 0.0  # a confirmation is due, the database
            # down: Redis's record of revocations confirms the tokens
            assert client.get(f"{FLAGS}/check/beta", headers=reader).json() == {"enabled": True}
            assert client.get(f"{FLAGS}/evaluate/beta", headers=reader).status_code == 200
            made_up = {"Authorization": "Bearer made-up-again"}
            assert client.get(f"{FLAGS}/check/beta", headers=made_up).status_code == 401
            refused = client.put(f"{FLAGS}/rollout/beta", params={"percentage": 5}, headers=admin)
            assert refused.status_code == 503


def test_a_cut_subscription_is_not_trusted_until_resynchronised(
    mariadb_url: str, redis_prefix: str, raw_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    with start(mariadb_url, redis_prefix) as client:
        seed(client)
        state = app_of(client).state
        assert state.replica.copy("production") is not None
        # Hold reconnection until the test has looked (a real cut; only the retry is held).
        held = True
        original = state.feed.redis.pubsub

        def pubsub_unless_held(**kwargs: Any) -> Any:
            if held:
                raise redis.exceptions.ConnectionError("held by the test")
            return original(**kwargs)

        monkeypatch.setattr(state.feed.redis, "pubsub", pubsub_unless_held)
        clients = raw_redis.client_list()
        feed_ids = [c["id"] for c in clients if c.get("name") == f"aurora-feed-{state.instance}"]
        assert len(feed_ids) == 1
        raw_redis.client_kill_filter(_id=feed_ids[0])
        eventually(lambda: state.replica.copy("production") is None, what="replica distrusted")
        assert client.get("/status").json()["read_model"]["feed_connected"] is False

        # While untrusted, a change (and the reads after it) go through Redis, not the replica.
        before = dict(state.reads.served)
        assert client.put(f"{FLAGS}/rollout/beta", params={"percentage": 40}).status_code == 200
        assert client.get(f"{FLAGS}/evaluate/beta").json()["rollout_percentage"] == 40
        assert state.reads.served["redis"] == before.get("redis", 0) + 1
        assert state.reads.served["replica"] == before.get("replica", 0)
        # A stream cannot be served from an untrusted replica.
        assert client.get("/api/v1/stream").status_code == 503

        held = False
        eventually(lambda: state.replica.copy("production") is not None, what="resynchronised")
        copy = state.replica.copy("production")
        assert copy.flags["beta"]["rollout_percentage"] == 40  # caught up, not just re-trusted
        before = state.reads.served["replica"]
        assert client.get(f"{FLAGS}/evaluate/beta").json()["rollout_percentage"] == 40
        assert state.reads.served["replica"] == before + 1


def test_redis_losing_its_data_is_rebuilt_from_the_database(
    mariadb_url: str, redis_prefix: str, raw_redis: redis.Redis
) -> None:
    with start(mariadb_url, redis_prefix) as client:
        seed(client)
        state = app_of(client).state
        old_epoch = state.replica.position("production")[0]
        delete_prefix(redis_prefix)  # what a Redis restart without persistence looks like
        for percentage in (11, 22):  # writes while the read model is gone: nothing is lost
            assert (
                client.put(f"{FLAGS}/rollout/beta", params={"percentage": percentage}).status_code
                == 200
            )
        rebuilt_and_drained(client, old_epoch)
        assert client.get(f"{FLAGS}/evaluate/beta").json()["rollout_percentage"] == 22
        assert (
            client.get(f"{CONFIGS}/value/timeout", params={"service_name": "billing"}).json()[
                "value"
            ]
            == 5
        )
        assert raw_redis.exists(f"{redis_prefix}{{production}}:epoch")


def test_a_rebuild_keeps_tombstones_so_a_late_change_cannot_resurrect_a_deleted_item(
    mariadb_url: str, redis_prefix: str, raw_redis: redis.Redis
) -> None:
    """An upsert of an item that was deleted since can still sit in the outbox (a relay of
    another instance read it before it was forgotten, or its immediate apply timed out). After
    Redis lost its data and the read model was rebuilt, that upsert must still lose to the
    delete: the rebuilt model keeps the delete's version as a tombstone."""
    with start(mariadb_url, redis_prefix) as client:
        seed(client)
        state = app_of(client).state
        created = client.post(f"{FLAGS}/", json={"flag_key": "doomed", "is_enabled": True})
        assert created.status_code == 201
        assert client.delete(f"{FLAGS}/{created.json()['id']}").status_code == 204
        old_epoch = state.replica.position("production")[0]
        stale = ChangeEvent(
            "flag", "upsert", "doomed", "production", None, 1, created.json() | {"version": 1}
        )

        def queue_stale(uow: UnitOfWork) -> None:
            with uow:
                uow.outbox.add(stale)
                uow.commit()

        delete_prefix(redis_prefix)  # what a Redis restart without persistence looks like
        portal_call(lambda: state.store.run(queue_stale))
        rebuilt_and_drained(client, old_epoch)
        assert client.get(f"{FLAGS}/check/doomed").status_code == 404
        assert not raw_redis.hexists(f"{redis_prefix}{{production}}:flags", "doomed")
        assert raw_redis.hget(f"{redis_prefix}{{production}}:versions", "f|doomed") == b"2"
        # Re-created, the key continues its versions past the tombstone and is served again.
        again = client.post(f"{FLAGS}/", json={"flag_key": "doomed", "is_enabled": True})
        assert again.json()["version"] == 3
        assert client.get(f"{FLAGS}/check/doomed").json() == {"enabled": True}


def environment_keys(raw_redis: redis.Redis, prefix: str) -> list[bytes]:
    return list(raw_redis.scan_iter(match=f"{prefix}{{production}}:*"))


def test_redis_restored_from_an_older_snapshot_is_rebuilt_from_the_database(
    mariadb_url: str, redis_prefix: str, raw_redis: redis.Redis
) -> None:
    """Redis keeps its epoch but goes back in revisions (an older RDB, a failover that dropped
    writes): changes it had acknowledged, whose outbox rows are gone, are missing from it. The
    instance notices the revision going back and rebuilds from the database."""
    with start(mariadb_url, redis_prefix) as client:
        seed(client)
        state = app_of(client).state
        old_epoch = state.replica.position("production")[0]
        snapshot = {key: raw_redis.dump(key) for key in environment_keys(raw_redis, redis_prefix)}
        for percentage in (30, 40):
            written = client.put(f"{FLAGS}/rollout/beta", params={"percentage": percentage})
            assert written.headers["x-aurora-propagation"] == "complete"
        for key, dumped in snapshot.items():  # the restore: every key as it was, epoch included
            raw_redis.restore(key, 0, dumped, replace=True)  # type: ignore[arg-type]
        rebuilt_and_drained(client, old_epoch)
        assert client.get(f"{FLAGS}/evaluate/beta").json()["rollout_percentage"] == 40
        item = raw_redis.hget(f"{redis_prefix}{{production}}:flags", "beta")
        assert item is not None
        assert b'"rollout_percentage":40' in item


def test_a_lost_revision_counter_is_noticed_before_the_write_and_rebuilt(
    mariadb_url: str, redis_prefix: str, raw_redis: redis.Redis
) -> None:
    """The counter gone under a live epoch (evicted): applying would change the data, then fail
    to append to the feed, leaving a change nobody is told of. The apply refuses, the relay
    rebuilds, and the change arrives."""
    with start(mariadb_url, redis_prefix) as client:
        seed(client)
        state = app_of(client).state
        assert client.put(f"{FLAGS}/rollout/beta", params={"percentage": 50}).status_code == 200
        raw_redis.delete(f"{redis_prefix}{{production}}:rev")
        written = client.put(f"{FLAGS}/rollout/beta", params={"percentage": 60})
        assert written.status_code == 200
        eventually(
            lambda: client.get("/status").json()["outbox"]["pending"] == 0, what="outbox drained"
        )
        eventually(
            lambda: (
                state.replica.copy("production") is not None
                and client.get(f"{FLAGS}/evaluate/beta").json()["rollout_percentage"] == 60
            ),
            what="the change, after a rebuild",
        )
        item = raw_redis.hget(f"{redis_prefix}{{production}}:flags", "beta")
        assert item is not None
        assert b'"rollout_percentage":60' in item


def portal_call(call: Callable[[], Any]) -> Any:
    """Run an async callable from this (sync) test, outside the app's event loop."""
    import anyio.from_thread  # noqa: PLC0415

    with anyio.from_thread.start_blocking_portal() as portal:
        return portal.call(call)


def test_a_change_whose_process_died_before_publishing_is_applied_by_the_relay(
    mariadb_url: str, redis_prefix: str
) -> None:
    with start(mariadb_url, redis_prefix) as client:
        seed(client)
        state = app_of(client).state
        # Commit exactly as a write does, but never propagate: the process "died" here.
        portal_call(
            lambda: state.store.run(
                configs.create,
                env="production",
                service=None,
                key="orphan",
                value=1,
                description=None,
                actor=Principal("crashed", frozenset({"admin"})),
            )
        )
        eventually(
            lambda: client.get(f"{CONFIGS}/value/orphan").status_code == 200,
            what="the relay to apply the orphaned change",
        )
        assert client.get(f"{CONFIGS}/value/orphan").json()["value"] == 1
        eventually(
            lambda: client.get("/status").json()["outbox"]["pending"] == 0, what="outbox drained"
        )


def test_a_second_instance_started_later_rebuilds_nothing(
    mariadb_url: str, redis_prefix: str
) -> None:
    with start(mariadb_url, redis_prefix) as first:
        seed(first)
        assert first.get("/status").json()["read_model"]["rebuilds"] == 3  # one per environment
        with start(mariadb_url, redis_prefix) as second:
            status = second.get("/status").json()["read_model"]
            assert status["rebuilds"] == 0
            assert status["replica"]["production"]["configs"] == 2
            statements = count_sql(app_of(second))
            assert second.get(f"{CONFIGS}/value/timeout").json()["value"] == 30
            assert statements == []
