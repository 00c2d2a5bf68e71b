"""The SSE change stream against real server processes, MariaDB and Redis (issue #4)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.backends import REDIS_PORT, redis_url
from tests.e2e.servers import Server
from tests.e2e.sse import StreamEnded, Subscription
from tests.faults import proxy_to

pytestmark = pytest.mark.mariadb

Instance = Callable[..., AbstractContextManager[Server]]
FLAGS = "/api/v1/feature-flags"
CONFIGS = "/api/v1/configurations"


def make_flag(server: Server, key: str = "beta") -> None:
    body = {"flag_key": key, "is_enabled": True, "rollout_percentage": 0}
    assert httpx.post(f"{server.url}{FLAGS}/", json=body).status_code == 201


def rollout(server: Server, percentage: int, key: str = "beta") -> httpx.Response:
    return httpx.put(
        f"{server.url}{FLAGS}/rollout/{key}", params={"percentage": percentage}, timeout=10
    )


def test_snapshot_first_then_every_change_with_its_cursor(instance: Instance) -> None:
    with instance() as server:
        make_flag(server)
        httpx.put(f"{server.url}{CONFIGS}/key/limit", json={"value": 1})
        with Subscription(server.url, environment="production") as sub:
            snapshot = sub.next()
            assert snapshot.event == "snapshot"
            assert sub.retry == 1000
            body = json.loads(snapshot.data)
            assert body["cursor"] == snapshot.id
            assert [f["flag_key"] for f in body["flags"]] == ["beta"]
            assert [(c["config_key"], c["config_value"]) for c in body["configs"]] == [("limit", 1)]
            epoch, revision = snapshot.id.rsplit(":", 1)

            rollout(server, 30)
            flag_id = httpx.get(f"{server.url}{FLAGS}/key/beta").json()["id"]
            assert httpx.delete(f"{server.url}{FLAGS}/{flag_id}").status_code == 204
            upsert, delete = sub.changes(2)
            assert (upsert["op"], upsert["kind"], upsert["key"], upsert["version"]) == (
                "upsert",
                "flag",
                "beta",
                2,
            )
            assert upsert["state"]["rollout_percentage"] == 30
            assert upsert["environment"] == "production"
            assert upsert["service_name"] is None
            assert upsert["id"] == f"{epoch}:{int(revision) + 1}"
            assert (delete["op"], delete["version"], delete["state"]) == ("delete", 3, None)
            assert delete["id"] == f"{epoch}:{int(revision) + 2}"


def test_reconnect_replays_exactly_the_missed_events(instance: Instance) -> None:
    with instance() as server:
        make_flag(server)
        with Subscription(server.url) as sub:
            assert sub.next().event == "snapshot"
            rollout(server, 1)
            sub.changes(1)
            cursor = sub.last_id
        for percentage in range(2, 52):  # 50 changes while disconnected
            assert rollout(server, percentage).status_code == 200
        with Subscription(server.url, last_event_id=cursor) as again:
            missed = again.changes(50)
            assert [m["state"]["rollout_percentage"] for m in missed] == list(range(2, 52))
            assert [m["version"] for m in missed] == list(range(3, 53))
            epoch, revision = cursor.rsplit(":", 1)  # type: ignore[union-attr]
            assert [m["id"] for m in missed] == [
                f"{epoch}:{int(revision) + i}" for i in range(1, 51)
            ]
            rollout(server, 99)  # and then live, with no gap and no duplicate
            (live,) = again.changes(1)
            assert (live["version"], live["id"]) == (53, f"{epoch}:{int(revision) + 51}")


@pytest.mark.parametrize("cursor", ["garbage", "0123456789abcdef:3", "x:1:2:y"])
def test_a_cursor_from_another_epoch_gets_a_fresh_snapshot(instance: Instance, cursor: str) -> None:
    with instance() as server:
        make_flag(server)
        with Subscription(server.url, last_event_id=cursor) as sub:
            first = sub.next()
            assert first.event == "snapshot"
            assert json.loads(first.data)["flags"][0]["flag_key"] == "beta"


def test_a_cursor_from_the_future_gets_a_snapshot_and_then_every_change(
    instance: Instance,
) -> None:
    """A cursor of this epoch but past Redis's revision (Redis lost what it names) must not make
    the stream skip every change up to that revision: it gets a snapshot, then live changes."""
    with instance() as server:
        make_flag(server)
        with Subscription(server.url) as sub:
            epoch, revision = sub.next().id.rsplit(":", 1)
        future = f"{epoch}:{int(revision) + 5}"
        with Subscription(server.url, last_event_id=future) as sub:
            first = sub.next()
            assert (first.event, first.id) == ("snapshot", f"{epoch}:{revision}")
            rollout(server, 42)
            (change,) = sub.changes(1)
            assert (change["state"]["rollout_percentage"], change["id"]) == (
                42,
                f"{epoch}:{int(revision) + 1}",
            )


def test_a_stream_carries_globals_its_own_service_and_flags_only(instance: Instance) -> None:
    with instance() as server, Subscription(server.url, service_name="billing") as sub:
        assert sub.next().event == "snapshot"
        for service in ("auth", None, "billing"):
            params = {"service_name": service} if service else {}
            httpx.put(f"{server.url}{CONFIGS}/key/k", params=params, json={"value": service})
        make_flag(server)
        seen = sub.changes(3)
        assert [(c["kind"], c["service_name"]) for c in seen] == [
            ("config", None),
            ("config", "billing"),
            ("flag", None),
        ]


SEGMENTS = "/api/v1/segments"
UNICODE_KEYS = ["Hellø_Wørld", "🚀", "a|b"]


def test_segments_ride_the_stream_and_any_unicode_key_is_carried_whole(instance: Instance) -> None:
    """Issue 10: the snapshot carries segments, a segment change is one event (however many
    flags name it), and keys with non-ASCII characters, emoji and "|" arrive intact, in the
    snapshot and in events, through percent-encoded request paths."""
    with instance() as server:
        users = [{"context_name": "userId", "operator": "IN", "values": ["7"]}]
        segment = {"name": "testers", "constraints": users}
        assert httpx.post(f"{server.url}{SEGMENTS}/", json=segment).status_code == 201
        rule = {"constraints": [], "segments": ["testers"]}
        for key in ("t1", "t2"):
            body = {"flag_key": key, "is_enabled": True, "rules": [rule]}
            assert httpx.post(f"{server.url}{FLAGS}/", json=body).status_code == 201
        for key in UNICODE_KEYS:
            make_flag(server, key)
        with Subscription(server.url) as sub:
            snapshot = sub.next()
            body = json.loads(snapshot.data)
            assert [(s["name"], s["version"]) for s in body["segments"]] == [("testers", 1)]
            assert sorted(f["flag_key"] for f in body["flags"]) == sorted(
                ["t1", "t2", *UNICODE_KEYS]
            )
            update = {"constraints": [{**users[0], "values": ["8"]}]}
            changed = httpx.put(f"{server.url}{SEGMENTS}/testers", json=update)
            assert changed.status_code == 200
            for key in UNICODE_KEYS:
                assert rollout(server, 40, quote(key, safe="")).status_code == 200
            seen = sub.changes(1 + len(UNICODE_KEYS))
            assert (seen[0]["kind"], seen[0]["key"], seen[0]["version"]) == (
                "segment",
                "testers",
                2,
            )
            assert seen[0]["state"]["constraints"][0]["values"] == ["8"]
            assert [(c["kind"], c["key"]) for c in seen[1:]] == [("flag", k) for k in UNICODE_KEYS]
            assert [c["state"]["flag_key"] for c in seen[1:]] == UNICODE_KEYS
            cursor = sub.last_id
        for key in UNICODE_KEYS:  # and a resume replays them intact from the Redis stream
            assert rollout(server, 60, quote(key, safe="")).status_code == 200
        with Subscription(server.url, last_event_id=cursor) as again:
            assert [c["key"] for c in again.changes(len(UNICODE_KEYS))] == UNICODE_KEYS


def frames(lines: Iterator[str]) -> Iterator[dict[str, str]]:
    """The raw SSE frames, field by field (an SSE client library would carry `id` over from the
    previous event, hiding whether a frame set one)."""
    frame: dict[str, str] = {}
    for line in lines:
        if not line:
            if frame:
                yield frame
            frame = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            frame[name] = value.removeprefix(" ")


def test_heartbeats_keep_an_idle_stream_observable(instance: Instance) -> None:
    with (
        instance() as server,
        httpx.stream("GET", f"{server.url}/api/v1/stream", timeout=10) as response,
    ):
        received = frames(response.iter_lines())
        snapshot = next(received)
        assert snapshot["event"] == "snapshot"
        for _ in range(2):  # they keep coming while nothing else is sent
            beat = next(received)
            assert beat["event"] == "heartbeat"
            assert json.loads(beat["data"])["cursor"] == snapshot["id"]
            assert "id" not in beat  # a heartbeat sets no id: Last-Event-ID stays put


def test_graceful_shutdown_ends_streams_with_a_retry_hint(instance: Instance) -> None:
    with instance() as server:
        with httpx.stream("GET", f"{server.url}/api/v1/stream", timeout=10) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("id:")
            started = time.monotonic()
            server.process.send_signal(15)
            tail = list(lines)  # the server closes the stream itself
        assert time.monotonic() - started < 8
        assert any(line.startswith(": closed: server shutting down") for line in tail), tail
        assert "retry: 1000" in tail
        # uvicorn re-raises SIGTERM once it has shut down cleanly, so the exit status is -15.
        assert server.process.wait(10) in {0, -15}
        assert "Application shutdown complete" in server.log.read_text()


def test_writes_survive_redis_going_away_mid_stream_and_are_all_delivered(
    instance: Instance,
) -> None:
    with (
        proxy_to(REDIS_PORT) as proxy,
        instance(
            REDIS_URL=redis_url(port=proxy.port), AURORA_PROPAGATION_WAIT_SECONDS="0.2"
        ) as server,
    ):
        make_flag(server)
        sub = Subscription(server.url)
        assert sub.next().event == "snapshot"
        acknowledged: list[int] = []
        for percentage in range(1, 31):
            if percentage == 11:
                proxy.cut()  # Redis goes away in the middle of the writes
            if percentage == 21:
                proxy.restore()
            response = rollout(server, percentage)
            assert response.status_code == 200, response.text
            acknowledged.append(response.json()["version"])
        # The subscriber reconnects (with its cursor) until it has seen every acknowledged write.
        seen: list[int] = []
        deadline = time.monotonic() + 30
        while (not seen or seen[-1] < acknowledged[-1]) and time.monotonic() < deadline:
            try:
                event = sub.next(within=3)
                if event.event == "upsert":
                    seen.append(json.loads(event.data)["version"])
                elif event.event == "snapshot":
                    seen.append(json.loads(event.data)["flags"][0]["version"])
            except (StreamEnded, TimeoutError, httpx.HTTPError):
                sub.close()
                time.sleep(0.2)
                sub = Subscription(server.url, last_event_id=sub.last_id)
        sub.close()
        assert seen
        assert seen[-1] == acknowledged[-1] == 31
        assert seen == sorted(set(seen)), "out of order or duplicated"
        state: dict[str, Any] = httpx.get(f"{server.url}{FLAGS}/key/beta").json()
        assert (state["version"], state["rollout_percentage"]) == (31, 30)
        assert httpx.get(f"{server.url}/status").json()["outbox"]["pending"] == 0


def test_two_instances_share_every_change(instance: Instance) -> None:
    with instance() as a, instance() as b:
        with Subscription(b.url) as sub:
            assert sub.next().event == "snapshot"
            make_flag(a)
            (created,) = sub.changes(1)
            assert (created["key"], created["version"]) == ("beta", 1)
            rollout(a, 70)
            (changed,) = sub.changes(1)
            assert changed["state"]["rollout_percentage"] == 70
        shown = httpx.get(f"{b.url}{FLAGS}/evaluate/beta", params={"user_id": "u"}).json()
        assert shown["rollout_percentage"] == 70
        with instance() as c:
            status = httpx.get(f"{c.url}/status").json()["read_model"]
            assert status["rebuilds"] == 0
            assert status["replica"]["production"]["flags"] == 1
            assert httpx.get(f"{c.url}{FLAGS}/key/beta").json()["rollout_percentage"] == 70
