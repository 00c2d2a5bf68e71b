"""The SDK's stream task against scripted servers (httpx.MockTransport): resume, bad events,
silence, status events, retry hints, refused tokens and close."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from aurora_client import AuroraClient, Status
from aurora_client._client import _write_atomically
from aurora_client.openfeature import AuroraProvider
from openfeature import api
from openfeature.event import ProviderEvent

from tests.unit.test_sdk_targeting import segment, targeted, who

FLAG = {
    "flag_key": "f",
    "environment": "production",
    "is_enabled": True,
    "rollout_percentage": 100,
    "version": 1,
}
SNAPSHOT = {
    "cursor": "e:1",
    "environment": "production",
    "service_name": None,
    "configs": [],
    "flags": [FLAG],
    "heartbeat_seconds": 15,
}


def sse(event: str, data: Any, id: str | None = None, retry: int | None = None) -> bytes:
    lines = [f"event: {event}", f"id: {id}" if id else "", f"retry: {retry}" if retry else ""]
    return ("\n".join(line for line in lines if line) + f"\ndata: {json.dumps(data)}\n\n").encode()


def snapshot(**changes: Any) -> bytes:
    return sse("snapshot", {**SNAPSHOT, **changes}, id=changes.get("cursor", "e:1"))


def stream(*events: bytes, hang: bool = False) -> httpx.Response:
    """A 200 event stream: these events, then the end (or, with `hang`, silence for good)."""

    async def body() -> AsyncIterator[bytes]:
        for event in events:
            yield event
        if hang:
            await asyncio.Event().wait()

    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())


class Server:
    """Answers the n-th stream request with `answer(n)`; records each request's Last-Event-ID."""

    def __init__(self, answer: Callable[[int], httpx.Response]) -> None:
        self.answer = answer
        self.resumed_from: list[str | None] = []
        self.timeouts: list[dict[str, float | None]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.resumed_from.append(request.headers.get("last-event-id"))
        self.timeouts.append(request.extensions["timeout"])
        return self.answer(len(self.resumed_from))

    def client(self, **options: Any) -> AuroraClient:
        return AuroraClient("http://aurora", transport=httpx.MockTransport(self), **options)


async def until(check: Callable[[], Any], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110 - polling what the client records
            await asyncio.sleep(0.002)


@pytest.fixture
def windows(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The backoff windows the client draws from; the draws themselves are 0 (no waiting)."""
    drawn: list[float] = []

    def uniform(low: float, high: float) -> float:
        drawn.append(high)
        return 0.0

    monkeypatch.setattr("aurora_client._client.random.uniform", uniform)
    return drawn


@pytest.mark.anyio
async def test_a_quiet_resume_is_live_at_the_heartbeat_after_the_replay(
    windows: list[float],
) -> None:
    def answer(n: int) -> httpx.Response:
        if n == 1:
            return stream(snapshot())  # then the connection drops
        # Resumed with nothing missed: no replayed event, the server's heartbeat only.
        return stream(sse("heartbeat", {"cursor": "e:1", "heartbeat_seconds": 15}), hang=True)

    server = Server(answer)
    async with server.client() as client:
        await until(lambda: len(server.resumed_from) == 2 and client.status is Status.READY)
        assert server.resumed_from == [None, "e:1"]
        assert client.snapshots == 1


@pytest.mark.anyio
async def test_a_heartbeat_on_a_fresh_connection_proves_nothing(windows: list[float]) -> None:
    beat = sse("heartbeat", {"cursor": "e:1", "heartbeat_seconds": 15})
    server = Server(lambda n: stream(beat) if n == 1 else stream(hang=True))
    seen: list[Status] = []
    async with server.client() as client:
        client.on_status(seen.append)
        await until(lambda: len(server.resumed_from) == 2)  # the first one was read to its end
        assert client.status is not Status.READY
        assert Status.READY not in seen
        assert not client.wait_until_ready(0)


BAD_FLAG = {**SNAPSHOT["flags"][0], "rollout_percentage": None, "version": 2}  # type: ignore[dict-item]
BAD_EVENTS = {
    "heartbeat data null": sse("heartbeat", None),
    "flag percentage null": sse(
        "upsert",
        {"kind": "flag", "op": "upsert", "key": "f", "environment": "production", "version": 2}
        | {"state": BAD_FLAG},
        id="e:2",
    ),
    "data a JSON list": sse("upsert", [], id="e:2"),
    "segment constraints not a list": sse(
        "upsert",
        {"kind": "segment", "op": "upsert", "key": "s", "environment": "production"}
        | {"version": 1, "state": {**segment(), "name": "s", "constraints": "plan IN beta"}},
        id="e:2",
    ),
    "snapshot data a JSON list": sse("snapshot", [], id="e:2"),
    "not JSON": b"event: upsert\nid: e:2\ndata: {oops\n\n",
}


@pytest.mark.parametrize("bad", BAD_EVENTS.values(), ids=BAD_EVENTS.keys())
def test_a_bad_event_costs_its_connection_not_the_client(
    bad: bytes, windows: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    server = Server(lambda n: stream(snapshot(), bad) if n <= 3 else stream(hang=True))
    client = server.client()
    client.start()
    thread = client._thread
    assert thread is not None
    try:
        deadline = time.monotonic() + 5
        while len(server.resumed_from) < 4:
            assert time.monotonic() < deadline, f"only {len(server.resumed_from)} connections"
            time.sleep(0.002)
        assert server.resumed_from == [None, "e:1", "e:1", "e:1"]  # resumed before the bad one
        assert windows == [1.0, 2.0, 4.0]  # each counted as a failure: the backoff grows
        assert client.cursor == "e:1"
        assert client.status is Status.STALE
        assert "bad" in (client.last_error or "")
        bad_logs = [
            r for r in caplog.records if r.levelno >= logging.WARNING and "bad" in r.getMessage()
        ]
        assert len(bad_logs) == 3  # once per bad event
        assert thread.is_alive()
    finally:
        client.close()  # must not raise
    assert not thread.is_alive()


@pytest.mark.anyio
async def test_silence_is_judged_by_the_heartbeat_the_server_announced(
    windows: list[float],
) -> None:
    def answer(n: int) -> httpx.Response:
        if n == 1:  # announces 50 ms heartbeats, then says nothing more
            return stream(snapshot(heartbeat_seconds=0.05), hang=True)
        return stream(hang=True)  # a connection that never sends a thing

    server = Server(answer)
    async with server.client() as client:
        await until(lambda: len(server.resumed_from) >= 3)
        assert client.heartbeat_seconds == 0.05
        assert server.resumed_from[1:3] == ["e:1", "e:1"]  # ended, and a head never came either
        assert client.status is Status.STALE
        assert "silent" in (client.last_error or "")
    # Not a read timeout fixed when connecting (at the heartbeat known then): a watchdog.
    assert all(timeout["read"] is None for timeout in server.timeouts)


@pytest.mark.anyio
async def test_status_listeners_see_every_transition(windows: list[float]) -> None:
    def answer(n: int) -> httpx.Response:
        if n == 1:
            return httpx.Response(503, json={"title": "Service unavailable"})
        if n == 2:  # live, then silent past two (50 ms) heartbeats
            return stream(snapshot(heartbeat_seconds=0.05), hang=True)
        return stream(hang=True)

    server = Server(answer)
    seen: list[Status] = []
    client = server.client()
    client.on_status(seen.append)
    async with client:
        await until(lambda: len(server.resumed_from) >= 3)
    assert seen == [Status.ERROR, Status.READY, Status.STALE]


def test_the_openfeature_provider_emits_stale_on_silence(windows: list[float]) -> None:
    release = threading.Event()

    def answer(n: int) -> httpx.Response:
        async def body() -> AsyncIterator[bytes]:
            # Silence means 1 s without a beat, beats come every 10 ms: a stalled loop on a busy
            # machine cannot pass for silence before the test releases it.
            yield snapshot(heartbeat_seconds=0.5)
            while not release.is_set():  # the mock server beats until the test releases it
                yield sse("heartbeat", {"cursor": "e:1", "heartbeat_seconds": 0.5})
                await asyncio.sleep(0.01)
            await asyncio.Event().wait()

        if n > 1:
            return stream(hang=True)
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())

    server = Server(answer)
    events: list[ProviderEvent] = []
    handlers = {
        kind: (lambda details, kind=kind: events.append(kind))
        for kind in (ProviderEvent.PROVIDER_READY, ProviderEvent.PROVIDER_STALE)
    }
    with server.client() as client:
        assert client.wait_until_ready(5)
        for kind, handler in handlers.items():
            api.add_handler(kind, handler)
        try:
            api.set_provider_and_wait(AuroraProvider(client))
            events.clear()  # READY: the default provider's, then ours (possibly late)
            release.set()
            deadline = time.monotonic() + 5
            while ProviderEvent.PROVIDER_STALE not in events:
                assert time.monotonic() < deadline, f"events: {events}"
                time.sleep(0.002)
            assert events.count(ProviderEvent.PROVIDER_STALE) == 1
            assert events[-1] is ProviderEvent.PROVIDER_STALE
        finally:
            for kind, handler in handlers.items():
                api.remove_handler(kind, handler)
            api.clear_providers()


@pytest.mark.anyio
async def test_the_retry_hint_is_kept_across_attempts_as_the_floor_of_the_window(
    windows: list[float],
) -> None:
    def answer(n: int) -> httpx.Response:
        if n == 1:  # live with `retry: 10000`, then the server goes away
            return stream(sse("snapshot", SNAPSHOT, id="e:1", retry=10_000))
        return httpx.Response(503, json={"title": "Service unavailable"})

    async with Server(answer).client(backoff_cap=30.0):
        await until(lambda: len(windows) >= 4)
    # After a live connection the window is the hint; then it doubles from there, capped.
    assert windows[:4] == [10.0, 20.0, 30.0, 30.0]


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [("7", [14.0, 28.0, 30.0]), ("60", [60.0, 60.0, 60.0])],  # a hint above the cap wins
)
@pytest.mark.anyio
async def test_retry_after_on_503_is_honoured(
    windows: list[float], retry_after: str, expected: list[float]
) -> None:
    def answer(n: int) -> httpx.Response:
        return httpx.Response(503, headers={"Retry-After": retry_after}, json={})

    async with Server(answer).client(backoff_cap=30.0):
        await until(lambda: len(windows) >= 3)
    assert windows[:3] == expected


class NoHead:
    """A server that accepts the request and never answers it; knows when it was given up."""

    def __init__(self) -> None:
        self.waiting = threading.Event()
        self.abandoned = threading.Event()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.waiting.set()
        try:
            await asyncio.Event().wait()
        finally:
            self.abandoned.set()
        raise AssertionError("unreachable")


def test_close_interrupts_a_response_head_that_never_comes(tmp_path: Path) -> None:
    server = NoHead()
    state_file = tmp_path / "state.json"
    client = AuroraClient(
        "http://aurora",
        bootstrap=SNAPSHOT,
        cache_file=state_file,
        transport=httpx.MockTransport(server),
    )
    client._dirty = True  # something to save at the end
    client.start()
    thread = client._thread
    assert thread is not None
    assert server.waiting.wait(5)
    client.close()
    assert not thread.is_alive()
    assert server.abandoned.is_set()
    assert json.loads(state_file.read_text())["cursor"] == "e:1"  # the final save ran


@pytest.mark.anyio
async def test_aclose_cancels_the_connection_and_waits_for_it() -> None:
    server = NoHead()
    client = AuroraClient("http://aurora", transport=httpx.MockTransport(server))
    async with client:
        await until(server.waiting.is_set)
    assert server.abandoned.is_set()  # awaited, not just cancelled


def unsaved_client_of_a_silent_server(tmp_path: Path) -> AuroraClient:
    """A client whose server never answers the head, with state still to save at close."""
    client = AuroraClient(
        "http://aurora",
        bootstrap=SNAPSHOT,
        cache_file=tmp_path / "state.json",
        transport=httpx.MockTransport(NoHead()),
    )
    client._dirty = True
    return client


def test_close_says_so_when_the_thread_does_not_stop_in_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    stuck, release = threading.Event(), threading.Event()

    def slow_write(path: Path, data: dict[str, Any]) -> None:  # a disk that hangs
        stuck.set()
        release.wait(10)

    monkeypatch.setattr("aurora_client._client._write_atomically", slow_write)
    client = unsaved_client_of_a_silent_server(tmp_path)
    client.start()
    thread = client._thread
    assert thread is not None
    try:
        client.close(timeout=0.05)
        assert thread.is_alive()
        assert any("did not stop" in r.getMessage() for r in caplog.records)
    finally:
        release.set()
        thread.join(5)
    assert not thread.is_alive()


@pytest.mark.anyio
async def test_aclose_cancels_a_task_that_does_not_stop_in_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    release = threading.Event()
    monkeypatch.setattr(
        "aurora_client._client._write_atomically", lambda path, data: release.wait(10)
    )
    client = unsaved_client_of_a_silent_server(tmp_path)
    try:
        await client.__aenter__()
        task = client._task
        await client.aclose(timeout=0.05)
        assert task is not None
        assert task.done()
    finally:
        release.set()
    assert any("did not stop" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("refusal", [401, 403])
@pytest.mark.anyio
async def test_a_refused_token_is_an_error_even_with_a_bootstrap_and_is_retried(
    windows: list[float], refusal: int
) -> None:
    refuse = True

    def answer(n: int) -> httpx.Response:
        if refuse:
            return httpx.Response(refusal, json={"title": "Unauthenticated"})
        return stream(snapshot(), hang=True)

    server = Server(answer)
    client = server.client(bootstrap=SNAPSHOT, backoff_cap=4.0, token="revoked")
    seen: list[Status] = []
    client.on_status(seen.append)
    assert client.status is Status.STALE  # serving the bootstrap
    async with client:
        await until(lambda: len(server.resumed_from) >= 5)
        assert client.status is Status.ERROR
        assert f"HTTP {refusal}" in (client.last_error or "")
        assert "token" in (client.last_error or "")
        assert client.is_enabled("f")  # still serving what it has
        assert windows[:4] == [1.0, 2.0, 4.0, 4.0]  # retried, with the capped backoff
        refuse = False  # the token was fixed
        await until(lambda: client.status is Status.READY)
    assert seen == [Status.ERROR, Status.STALE, Status.READY]  # accepted, then confirmed
    assert client.last_error is None


@pytest.mark.anyio
async def test_a_failed_state_file_write_is_retried_and_saving_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A disk that fails once (full, read-only for a moment) must not end persistence for the
    life of the client: the newest state reaches the file once the disk works again."""
    monkeypatch.setattr("aurora_client._client.PERSIST_EVERY_SECONDS", 0.01)
    real_write = _write_atomically
    failed = 0

    def flaky_write(path: Path, data: dict[str, Any]) -> None:
        nonlocal failed
        if failed == 0:
            failed += 1
            raise OSError(28, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr("aurora_client._client._write_atomically", flaky_write)
    more = asyncio.Event()

    def answer(n: int) -> httpx.Response:
        async def body() -> AsyncIterator[bytes]:
            yield snapshot()
            await more.wait()
            state = {**FLAG, "rollout_percentage": 30, "version": 2}
            change = {"kind": "flag", "op": "upsert", "key": "f", "environment": "production"}
            yield sse("upsert", {**change, "version": 2, "state": state}, id="e:2")
            await asyncio.Event().wait()

        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())

    state_file = tmp_path / "state.json"
    client = Server(answer).client(cache_file=state_file)

    def saved_cursor() -> str | None:
        try:
            return json.loads(state_file.read_text())["cursor"]  # type: ignore[no-any-return]
        except FileNotFoundError:
            return None

    async with client:
        await until(lambda: failed == 1)
        await until(lambda: saved_cursor() == "e:1")  # retried after the failure
        more.set()
        await until(lambda: saved_cursor() == "e:2")  # and saving goes on
        assert client.status is Status.READY
        assert client.evaluation("f", "u") is not None
        assert client.all_flags()["f"].rollout_percentage == 30
    assert client.persist_failures == 1
    assert any("No space left" in r.getMessage() for r in caplog.records)


@pytest.mark.anyio
async def test_a_segment_event_changes_the_answer_and_is_resumed_after(
    windows: list[float], tmp_path: Path
) -> None:
    pro = segment(("pro",), version=2)
    change = {"kind": "segment", "op": "upsert", "key": "beta-testers"}
    change |= {"environment": "production", "version": 2, "state": pro}
    first = stream(
        snapshot(flags=[targeted()], segments=[segment()]), sse("upsert", change, id="e:2")
    )
    beat = sse("heartbeat", {"cursor": "e:2", "heartbeat_seconds": 15})
    server = Server(lambda n: first if n == 1 else stream(beat, hang=True))
    state_file = tmp_path / "state.json"
    async with server.client(cache_file=state_file) as client:
        await until(lambda: len(server.resumed_from) == 2 and client.status is Status.READY)
        assert server.resumed_from == [None, "e:2"]  # by cursor, past the segment's event
        assert client.is_enabled("checkout", context=who("1", plan="pro")) is True
        assert client.is_enabled("checkout", context=who("1", plan="beta")) is False
    saved = json.loads(state_file.read_text())
    assert (saved["cursor"], saved["segments"]) == ("e:2", [pro])
    assert saved["flags"] == [targeted()]


@pytest.mark.anyio
async def test_names_in_any_unicode_are_percent_encoded_in_the_stream_url(
    windows: list[float],
) -> None:
    environment, service = "prød 🚀", "a/b?c#d%e&f=g+h"
    seen: list[httpx.URL] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        data = {**SNAPSHOT, "environment": environment, "service_name": service, "flags": []}
        return stream(sse("snapshot", data, id="e:1"), hang=True)

    transport = httpx.MockTransport(answer)
    async with AuroraClient("http://aurora", environment, service, transport=transport) as client:
        await until(lambda: client.status is Status.READY)
    (url,) = seen
    assert url.path == "/api/v1/stream"
    assert dict(url.params) == {"environment": environment, "service_name": service}
    query = url.query.decode("ascii")  # nothing but ASCII on the wire
    assert "pr%C3%B8d" in query
    assert "%F0%9F%9A%80" in query
    for reserved in "/?#&=+":
        assert reserved not in query.split("&", 1)[1].partition("=")[2], query
