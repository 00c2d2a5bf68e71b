"""The client SDK against live servers on MariaDB and Redis (issue #5; targeting: issue 10)."""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from aurora_client import AuroraClient, Change, Context, Status
from aurora_client.openfeature import AuroraProvider, to_context
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason as OFReason

from tests.backends import eventually
from tests.e2e.servers import Server
from tests.e2e.sse import Subscription
from tests.faults import free_port, proxy_to

pytestmark = pytest.mark.mariadb

Instance = Callable[..., AbstractContextManager[Server]]
FLAGS = "/api/v1/feature-flags"
CONFIGS = "/api/v1/configurations"


def seed(server: Server) -> None:
    httpx.post(
        f"{server.url}{FLAGS}/",
        json={"flag_key": "beta", "is_enabled": True, "rollout_percentage": 0},
    )
    httpx.put(f"{server.url}{CONFIGS}/key/limit", json={"value": 10})
    httpx.put(
        f"{server.url}{CONFIGS}/key/limit", params={"service_name": "billing"}, json={"value": 20}
    )


def test_a_change_reaches_listeners_and_reads_within_the_budget(instance: Instance) -> None:
    with instance() as server:
        seed(server)
        with AuroraClient(server.url, "production", "billing") as client:
            assert client.wait_until_ready(5)
            assert client.status is Status.READY
            assert client.get("limit") == 20  # its own value over the global
            assert client.is_enabled("beta", "u1") is False
            seen: list[tuple[Change, float]] = []
            arrived = threading.Event()

            @client.on_change
            def record(change: Change) -> None:
                seen.append((change, time.monotonic()))
                arrived.set()

            sent = time.monotonic()
            httpx.put(f"{server.url}{FLAGS}/rollout/beta", params={"percentage": 100})
            assert arrived.wait(2)
            change, at = seen[0]
            assert (change.kind, change.key, change.new.rollout_percentage) == ("flag", "beta", 100)  # type: ignore[union-attr]
            assert at - sent < 1.0  # the propagation budget, with lots of slack for CI
            assert client.is_enabled("beta", "u1") is True
            own = httpx.get(f"{server.url}{CONFIGS}/key/limit", params={"service_name": "billing"})
            httpx.delete(f"{server.url}{CONFIGS}/{own.json()['id']}")
            eventually(lambda: client.get("limit") == 10, within=2, what="fallback to the global")


def test_killed_server_is_stale_then_caught_up_by_cursor_without_a_snapshot(
    instance: Instance,
) -> None:
    port = free_port()
    with instance() as other:
        seed(other)
        server_cm = instance(port=port)
        server = server_cm.__enter__()
        client = AuroraClient(server.url, "production", backoff_cap=0.5)
        client.start()
        try:
            assert client.wait_until_ready(5)
            assert client.snapshots == 1
            server.process.send_signal(signal.SIGKILL)  # no goodbye
            server.process.wait(5)
            eventually(lambda: client.status is Status.STALE, within=5, what="STALE")
            assert client.is_enabled("beta", "x") is False  # still serves what it has
            for percentage in (10, 20, 30):  # changes made elsewhere while it is gone
                httpx.put(f"{other.url}{FLAGS}/rollout/beta", params={"percentage": percentage})
            with instance(port=port):
                eventually(lambda: client.status is Status.READY, within=10, what="READY again")
                eventually(
                    lambda: client.all_flags()["beta"].rollout_percentage == 30,
                    within=5,
                    what="the missed changes",
                )
                assert client.snapshots == 1  # caught up by cursor: no snapshot
                assert client.reconnects >= 1
        finally:
            client.close()
            server_cm.__exit__(None, None, None)


def test_a_resumed_stream_sends_a_heartbeat_right_after_the_replay(instance: Instance) -> None:
    # Periodic heartbeats every 60 s: the one that comes at once is the resume's.
    with instance(AURORA_SSE_HEARTBEAT_SECONDS="60") as server:
        seed(server)
        with Subscription(server.url) as first:
            cursor = first.next().id
        with Subscription(server.url, last_event_id=cursor) as resumed:
            beat = resumed.next(within=5, heartbeats=True)
            assert beat.event == "heartbeat"
            assert json.loads(beat.data) == {"cursor": cursor, "heartbeat_seconds": 60.0}
            assert resumed.retry == 1000  # the first event of a stream carries the retry hint


def test_a_quiet_resume_is_ready_again_without_waiting_for_a_write(instance: Instance) -> None:
    with instance(AURORA_SSE_HEARTBEAT_SECONDS="60") as server, proxy_to(server.port) as proxy:
        seed(server)
        with AuroraClient(f"http://127.0.0.1:{proxy.port}", backoff_cap=0.5) as client:
            assert client.wait_until_ready(5)
            proxy.cut()  # a network blip; nothing changes meanwhile
            eventually(lambda: client.status is Status.STALE, within=5, what="STALE")
            proxy.restore()
            eventually(lambda: client.status is Status.READY, within=10, what="READY again")
            assert client.snapshots == 1  # resumed by cursor
            assert client.reconnects >= 1


def test_a_silent_connection_is_stale_and_reconnected(instance: Instance) -> None:
    with instance(AURORA_SSE_HEARTBEAT_SECONDS="0.5") as server:
        seed(server)
        with AuroraClient(server.url, backoff_cap=0.5) as client:
            assert client.wait_until_ready(5)
            assert client.heartbeat_seconds == 0.5  # learnt from the server
            server.process.send_signal(signal.SIGSTOP)  # alive, connected, and silent
            try:
                eventually(lambda: client.status is Status.STALE, within=5, what="STALE")
                assert client.last_contact_age is not None
                assert client.last_contact_age > 1.0
                # The silent connection is ended (at two of the server's heartbeats, not of the
                # 15 s default) and another one tried.
                eventually(lambda: client.reconnects >= 1, within=5, what="a reconnect")
                assert "silent" in (client.last_error or "")
            finally:
                server.process.send_signal(signal.SIGCONT)
            eventually(lambda: client.status is Status.READY, within=10, what="READY again")


def test_bootstrap_and_the_last_good_state_serve_while_the_server_is_down(
    instance: Instance, tmp_path: Path
) -> None:
    state_file = tmp_path / "aurora-state.json"
    with instance() as server:
        seed(server)
        with AuroraClient(server.url, "production", "billing", cache_file=state_file) as client:
            assert client.wait_until_ready(5)
            httpx.put(f"{server.url}{FLAGS}/rollout/beta", params={"percentage": 100})
            eventually(lambda: client.is_enabled("beta", "u"), within=2, what="the change")
        saved = json.loads(state_file.read_text())
        assert saved["cursor"] == client.cursor
    dead = f"http://127.0.0.1:{free_port()}"
    with AuroraClient(dead, "production", "billing", cache_file=state_file) as offline:
        assert offline.status is Status.STALE
        assert offline.get("limit") == 20
        assert offline.is_enabled("beta", "u") is True
        assert offline.cursor == saved["cursor"]  # it will resume from here
        assert offline.wait_until_ready(0.3) is False
    bootstrap = {
        "configs": [
            {
                "config_key": "limit",
                "config_value": 1,
                "environment": "production",
                "service_name": None,
                "version": 1,
            }
        ],
        "flags": [],
    }
    with AuroraClient(dead, bootstrap=bootstrap) as booted:
        assert booted.status is Status.STALE
        assert booted.get("limit") == 1
    with AuroraClient(dead) as empty:
        eventually(lambda: empty.status is Status.ERROR, within=5, what="ERROR")
        assert empty.get("limit", "default") == "default"


def test_sdk_and_server_agree_on_100000_evaluations(instance: Instance) -> None:
    rng = random.Random(20261125)
    with instance() as server:
        percentages = {f"flag-{i}": rng.randint(0, 100) for i in range(100)}
        for key, percentage in percentages.items():
            body = {
                "flag_key": key,
                "is_enabled": rng.random() > 0.1,
                "rollout_percentage": percentage,
            }
            assert httpx.post(f"{server.url}{FLAGS}/", json=body).status_code == 201
        users = [f"user-{rng.getrandbits(40)}" for _ in range(1000)]
        with AuroraClient(server.url) as client, httpx.Client(base_url=server.url) as http:
            assert client.wait_until_ready(5)
            compared = 0
            for user in users:
                expected = http.get(f"{FLAGS}/bulk", params={"user_id": user}).json()
                for key in percentages:
                    assert client.is_enabled(key, user) is expected[key], (key, user)
                    compared += 1
        assert compared == 100_000


def test_openfeature_provider(instance: Instance) -> None:
    with instance() as server:
        seed(server)
        httpx.put(f"{server.url}{CONFIGS}/key/ratio", json={"value": 0.5})
        httpx.put(f"{server.url}{CONFIGS}/key/tags", json={"value": ["a", "b"]})
        with AuroraClient(server.url, "production", "billing") as client:
            api.set_provider_and_wait(AuroraProvider(client))
            of = api.get_client()
            user = EvaluationContext(targeting_key="user-1")
            details = of.get_boolean_details("beta", True, user)
            assert (details.value, details.reason) == (False, OFReason.SPLIT)
            assert of.get_integer_value("limit", 0) == 20
            assert of.get_float_value("ratio", 0.0) == 0.5
            assert of.get_object_value("tags", []) == ["a", "b"]
            missing = of.get_boolean_details("nope", True, user)
            assert (missing.value, missing.error_code) == (True, ErrorCode.FLAG_NOT_FOUND)
            wrong = of.get_string_details("limit", "x")
            assert (wrong.value, wrong.error_code) == ("x", ErrorCode.TYPE_MISMATCH)
            server.process.send_signal(signal.SIGKILL)
            server.process.wait(5)
            eventually(lambda: client.status is Status.STALE, within=5, what="STALE")
            stale = of.get_boolean_details("beta", True, user)
            assert (stale.value, stale.reason) == (False, OFReason.STALE)
        api.clear_providers()


@pytest.mark.anyio
async def test_async_usage(instance: Instance) -> None:
    with instance() as server:
        seed(server)
        async with AuroraClient(server.url, "production", "billing") as client:
            assert await client.ready(5)
            assert client.get("limit") == 20
            async with httpx.AsyncClient() as http:
                await http.put(f"{server.url}{CONFIGS}/key/limit", json={"value": 11})
                await http.put(
                    f"{server.url}{CONFIGS}/key/limit",
                    params={"service_name": "billing"},
                    json={"value": 21},
                )
            deadline = time.monotonic() + 3
            while client.get("limit") != 21 and time.monotonic() < deadline:
                import asyncio  # noqa: PLC0415

                await asyncio.sleep(0.01)
            assert client.get("limit") == 21


SEGMENTS = "/api/v1/segments"


def in_list(name: str, *values: str) -> dict[str, object]:
    return {"context_name": name, "operator": "IN", "values": list(values)}


def shopper(plan: str | None = None) -> Context:
    properties: dict[str, object] = {"country": "DE-BY", "age": 30}
    if plan:
        properties["plan"] = plan
    return Context.of({"userId": "42", "properties": properties})


def test_a_targeted_flag_end_to_end(instance: Instance, tmp_path: Path) -> None:
    """docs/SDK.md's example: a segment and a flag with a rule and variants written over REST,
    checked in the SDK with a context; a segment change is one event; the state file keeps it."""
    state_file = tmp_path / "state.json"
    with instance() as server, httpx.Client(base_url=server.url) as http:
        segment = {"name": "beta-testers", "constraints": [in_list("plan", "beta")]}
        assert http.post(f"{SEGMENTS}/", json=segment).status_code == 201
        rule = {
            "id": "beta-de",
            "segments": ["beta-testers"],
            "constraints": [
                in_list("userId", "42", "43"),
                {"context_name": "country", "operator": "STR_STARTS_WITH", "values": ["DE"]},
                {"context_name": "age", "operator": "NUM_GT", "value": "17"},
            ],
        }
        variants = [
            {"name": "blue", "payload": {"type": "string", "value": "#00f"}},
            {"name": "green", "payload": {"type": "json", "value": '{"shade": 2}'}},
        ]
        flag = {"flag_key": "checkout-v2", "is_enabled": True, "rules": [rule]}
        assert http.post(f"{FLAGS}/", json={**flag, "variants": variants}).status_code == 201
        user, beta_user, pro = shopper(), shopper("beta"), shopper("pro")
        with AuroraClient(server.url, cache_file=state_file) as client:
            assert client.wait_until_ready(5)
            seen: list[Change] = []
            client.on_change(seen.append)
            assert client.is_enabled("checkout-v2", context=beta_user) is True
            assert client.is_enabled("checkout-v2", context=user) is False  # not in the segment
            assert client.is_enabled("checkout-v2", "42") is False  # a user id alone: no
            variant = client.get_variant("checkout-v2", context=beta_user)
            assert (variant.name, variant.payload) == ("blue", variants[0]["payload"])
            # One segment change flips every flag using it, as one event.
            plans = {"constraints": [in_list("plan", "beta", "pro")]}
            assert client.is_enabled("checkout-v2", context=pro) is False
            assert http.put(f"{SEGMENTS}/beta-testers", json=plans).status_code == 200
            eventually(
                lambda: client.is_enabled("checkout-v2", context=pro),
                within=2,
                what="the segment's change",
            )
            assert [(c.kind, c.key) for c in seen] == [("segment", "beta-testers")]
            # OpenFeature on the same client: the variant's payload as a string and an object.
            provider = AuroraProvider(client)
            of = EvaluationContext("43", {"country": "DE", "age": 18, "plan": "pro"})
            chosen = client.get_variant("checkout-v2", context=to_context(of)).name
            text = provider.resolve_string_details("checkout-v2", "", of)
            shade = provider.resolve_object_details("checkout-v2", {}, of)
            if chosen == "blue":
                assert (text.value, text.variant, shade.error_code) == (
                    "#00f",
                    "blue",
                    ErrorCode.TYPE_MISMATCH,
                )
            else:
                assert (shade.value, shade.variant, text.error_code) == (
                    {"shade": 2},
                    "green",
                    ErrorCode.TYPE_MISMATCH,
                )
        saved = json.loads(state_file.read_text())
        assert [s["name"] for s in saved["segments"]] == ["beta-testers"]
        assert saved["flags"][0]["rules"][0]["id"] == "beta-de"
    with AuroraClient(f"http://127.0.0.1:{free_port()}", cache_file=state_file) as offline:
        assert offline.status is Status.STALE
        assert offline.is_enabled("checkout-v2", context=pro) is True  # the saved segment


UNICODE_KEYS = ["Hellø_Wørld", "🚀 launch", "a/b?c#d%e&f=g+h"]


def test_flag_keys_in_any_unicode_reach_the_sdk(instance: Instance) -> None:
    """Keys percent-encoded in every path (quote with no safe characters): the SDK sees each
    flag under its own key, and every write to it."""
    with (
        instance() as server,
        httpx.Client(base_url=server.url) as http,
        AuroraClient(server.url) as client,
    ):
        assert client.wait_until_ready(5)
        for key in UNICODE_KEYS:
            body = {"flag_key": key, "is_enabled": True, "rollout_percentage": 100}
            assert http.post(f"{FLAGS}/", json=body).status_code == 201, key
        eventually(lambda: set(UNICODE_KEYS) <= set(client.all_flags()), within=2, what="the flags")
        for key in UNICODE_KEYS:
            assert client.is_enabled(key, "u1") is True
            path = quote(key, safe="")
            rules = {"rules": [{"constraints": [in_list("userId", "u2")]}]}
            assert http.put(f"{FLAGS}/rules/{path}", json=rules).status_code == 200, key
        eventually(
            lambda: not any(client.is_enabled(key, "u1") for key in UNICODE_KEYS),
            within=2,
            what="the rules",
        )
        for key in UNICODE_KEYS:
            assert client.is_enabled(key, context={"userId": "u2"}) is True
            assert client.details(key, {"userId": "u2"}).rule_id == "r1"  # type: ignore[union-attr]
