"""The SDK's local copy and reconnect policy, without a server."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from aurora_client import AuroraClient, Change, Status
from aurora_client._cache import LocalCache
from aurora_client._client import _write_atomically
from aurora_client.events import ChangeEvent


def config(key: str, value: Any, service: str | None = None, version: int = 1) -> dict[str, Any]:
    return {
        "config_key": key,
        "config_value": value,
        "environment": "production",
        "service_name": service,
        "version": version,
    }


def flag(key: str, percentage: int, version: int = 1, enabled: bool = True) -> dict[str, Any]:
    return {
        "flag_key": key,
        "environment": "production",
        "is_enabled": enabled,
        "rollout_percentage": percentage,
        "version": version,
    }


SNAPSHOT = {
    "cursor": "e:5",
    "configs": [config("a", 1), config("b", 2), config("b", 20, "svc"), config("c", 3, "other")],
    "flags": [flag("f", 100)],
}


def test_snapshot_resolves_the_service_view() -> None:
    cache = LocalCache("production", "svc")
    cache.load(SNAPSHOT)
    assert cache.values == {"a": 1, "b": 20}  # its own b; not the other service's c
    assert cache.cursor == "e:5"
    assert cache.flags["f"].rollout_percentage == 100


def test_changes_apply_by_version_and_report_what_the_service_sees() -> None:
    cache = LocalCache("production", "svc")
    cache.load(SNAPSHOT)
    global_b = ChangeEvent(
        "config", "upsert", "b", "production", None, 2, config("b", 99, version=2)
    )
    assert cache.apply(global_b, "e:6") == []  # shadowed by the service's own value
    own_b = ChangeEvent("config", "delete", "b", "production", "svc", 2, None)
    assert cache.apply(own_b, "e:7") == [Change("config", "b", 20, 99)]  # falls back to global
    stale = ChangeEvent("config", "upsert", "b", "production", "svc", 1, config("b", 5, "svc"))
    assert cache.apply(stale, "e:8") == []  # older than the delete
    assert cache.values["b"] == 99
    assert cache.cursor == "e:8"
    gone = ChangeEvent("flag", "delete", "f", "production", None, 2, None)
    (change,) = cache.apply(gone, "e:9")
    assert (change.kind, change.key, change.new) == ("flag", "f", None)
    assert "f" not in cache.flags


def test_a_malformed_change_changes_nothing() -> None:
    cache = LocalCache("production", "svc")
    cache.load(SNAPSHOT)
    broken = {**flag("f", 0, version=2), "rollout_percentage": None}
    with pytest.raises(TypeError):
        cache.apply(ChangeEvent("flag", "upsert", "f", "production", None, 2, broken), "e:6")
    with pytest.raises(TypeError):
        cache.apply(ChangeEvent("config", "upsert", "a", "production", None, 2, []), "e:6")  # type: ignore[arg-type]
    assert cache.cursor == "e:5"  # a resume asks for it again
    fixed = ChangeEvent("flag", "upsert", "f", "production", None, 2, flag("f", 0, version=2))
    assert [c.key for c in cache.apply(fixed, "e:6")] == ["f"]  # not skipped as already seen
    assert cache.cursor == "e:6"


def test_a_new_snapshot_reports_only_differences() -> None:
    cache = LocalCache("production", None)
    cache.load(SNAPSHOT)
    changes = cache.load({**SNAPSHOT, "configs": [config("a", 1), config("b", 3, version=2)]})
    assert changes == [Change("config", "b", 2, 3)]


def test_reads_before_anything_is_loaded_give_defaults() -> None:
    client = AuroraClient("http://127.0.0.1:9")
    assert client.status is Status.NOT_READY
    assert client.get("a", "fallback") == "fallback"
    assert client.is_enabled("f", "1", default=True) is True
    assert client.evaluation("f") is None


def test_null_values_are_values_not_defaults() -> None:
    client = AuroraClient("http://127.0.0.1:9", bootstrap={"configs": [config("n", None)]})
    assert client.get("n", "default") is None
    assert client.status is Status.STALE  # bootstrapped: serving, not confirmed live


@pytest.mark.anyio
async def test_reconnects_back_off_exponentially_with_full_jitter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    windows: list[float] = []

    def uniform(low: float, high: float) -> float:
        windows.append(high)
        return 0.0

    monkeypatch.setattr("aurora_client._client.random.uniform", uniform)
    calls = 0

    def refuse(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(503, json={"title": "Service unavailable"})

    client = AuroraClient("http://aurora", backoff_cap=4.0, transport=httpx.MockTransport(refuse))
    async with client:
        async with asyncio.timeout(5):
            while len(windows) < 8:  # noqa: ASYNC110 - polling what the client records
                await asyncio.sleep(0.001)
    assert windows[:8] == [1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0]  # 0.5 s doubling, capped
    assert client.status is Status.ERROR
    assert "HTTP 503" in (client.last_error or "")
    assert calls >= 8


BOOT = {"configs": [config("limit", 1)], "flags": []}
FOREIGN = {"cursor": "x:9", "configs": [config("limit", 999)], "flags": []}
BAD_STATE_FILES = {
    "truncated": '{"cursor": "e:1", "configs": [',
    "JSON null": "null",
    "a JSON list": "[]",
    "configs not a list": '{"configs": "abc"}',
    "a flag not an object": '{"flags": [1]}',
    "cursor not a string": '{"cursor": 5, "configs": []}',
    "another environment": json.dumps({**FOREIGN, "environment": "staging"}),
    "another service": json.dumps(
        {**FOREIGN, "environment": "production", "service_name": "other"}
    ),
    "items of another environment": json.dumps(
        {"configs": [{**config("limit", 999), "environment": "staging"}]}
    ),
}


@pytest.mark.parametrize("text", BAD_STATE_FILES.values(), ids=BAD_STATE_FILES.keys())
def test_a_damaged_or_foreign_state_file_is_ignored_for_the_bootstrap(
    tmp_path: Path, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    state_file = tmp_path / "state.json"
    state_file.write_text(text)
    client = AuroraClient(
        "http://127.0.0.1:9", "production", "svc", cache_file=state_file, bootstrap=BOOT
    )
    assert client.get("limit") == 1  # the bootstrap, not the file
    assert client.cursor is None
    assert client.status is Status.STALE
    assert any(str(state_file) in r.getMessage() for r in caplog.records)  # says why


def test_a_state_file_of_this_environment_and_service_wins_over_the_bootstrap(
    tmp_path: Path,
) -> None:
    state_file = tmp_path / "state.json"
    mine = {**FOREIGN, "cursor": "e:9", "environment": "production", "service_name": "svc"}
    state_file.write_text(json.dumps(mine))
    client = AuroraClient(
        "http://127.0.0.1:9", "production", "svc", cache_file=state_file, bootstrap=BOOT
    )
    assert (client.get("limit"), client.cursor) == (999, "e:9")


def test_the_state_file_is_synced_to_disk_before_it_replaces_the_last_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps: list[str] = []
    replace = os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: steps.append("fsync"))
    monkeypatch.setattr(os, "replace", lambda a, b: (steps.append("replace"), replace(a, b)))
    _write_atomically(tmp_path / "state.json", {"cursor": "e:1"})
    assert steps == ["fsync", "replace"]
    assert json.loads((tmp_path / "state.json").read_text()) == {"cursor": "e:1"}


JSON_CHANGES = {
    "1 to true": (1, True),
    "1 to 1.0": (1, 1.0),
    "0 to false": (0, False),
    "an object's 1 to true": ({"a": 1}, {"a": True}),
    "a list's 1.0 to 1": ([1.0], [1]),
}


@pytest.mark.parametrize(("old", "new"), JSON_CHANGES.values(), ids=JSON_CHANGES.keys())
def test_a_change_python_calls_equal_is_still_a_change(old: Any, new: Any) -> None:
    """The server stores 1 -> true as a new version; the client must not keep serving 1."""
    client = AuroraClient("http://127.0.0.1:9", bootstrap={"configs": [config("k", old)]})
    seen: list[Change] = []
    client.on_change(seen.append)
    event = ChangeEvent("config", "upsert", "k", "production", None, 2, config("k", new, None, 2))
    client._notify(client._cache.apply(event, "e:2"))
    assert json.dumps(client.get("k")) == json.dumps(new)
    assert seen == [Change("config", "k", old, new)]
    assert json.dumps(seen[0].new) == json.dumps(new)


@pytest.mark.parametrize(("old", "new"), JSON_CHANGES.values(), ids=JSON_CHANGES.keys())
def test_a_snapshot_reports_changes_python_calls_equal(old: Any, new: Any) -> None:
    cache = LocalCache("production", None)
    cache.load({"configs": [config("k", old)]})
    changes = cache.load({"configs": [config("k", new, version=2)]})
    assert [(c.key, json.dumps(c.new)) for c in changes] == [("k", json.dumps(new))]


def test_a_key_order_is_not_a_change() -> None:
    cache = LocalCache("production", None)
    cache.load({"configs": [config("k", {"a": 1, "b": 2})]})
    event = ChangeEvent(
        "config", "upsert", "k", "production", None, 2, config("k", {"b": 2, "a": 1}, version=2)
    )
    assert cache.apply(event, "e:2") == []
