"""The configuration API, end to end through HTTP, on SQLite and MariaDB."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from fastapi.testclient import TestClient

API = "/api/v1/configurations"


def create(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post(f"{API}/", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_seed_example_create_and_read_back_by_value(client: TestClient) -> None:
    created = client.post(
        f"{API}/",
        json={
            "config_key": "database.max_connections",
            "config_value": 100,
            "environment": "production",
            "service_name": "user-service",
            "description": "Maximum database connections",
        },
    )
    assert created.status_code == 201
    assert created.headers["etag"] == '"1"'
    response = client.get(
        f"{API}/value/database.max_connections",
        params={"environment": "production", "service_name": "user-service"},
    )
    assert response.status_code == 200
    assert response.json() == {
        "key": "database.max_connections",
        "value": 100,
        "environment": "production",
        "service_name": "user-service",
        "scope": "service",
        "version": 1,
    }


@pytest.mark.parametrize(
    "value", [100, 2.5, "text", True, False, None, {"a": [1, {"b": None}]}, [1, "two", 3.0], ""]
)
def test_values_keep_their_json_type(client: TestClient, value: Any) -> None:
    created = create(client, config_key="k", config_value=value)
    assert created["config_value"] == value
    fetched = client.get(f"{API}/{created['id']}").json()
    assert fetched["config_value"] == value
    assert type(fetched["config_value"]) is type(value)
    assert client.get(f"{API}/value/k").json()["value"] == value


def test_environment_defaults_to_production(client: TestClient) -> None:
    created = create(client, config_key="k", config_value=1)
    assert created["environment"] == "production"
    assert created["service_name"] is None


def test_value_falls_back_to_global_and_says_which_scope(client: TestClient) -> None:
    create(client, config_key="timeout", config_value=30, environment="staging")
    params = {"environment": "staging", "service_name": "billing"}
    fallback = client.get(f"{API}/value/timeout", params=params).json()
    assert (fallback["value"], fallback["scope"]) == (30, "global")
    create(
        client, config_key="timeout", config_value=5, environment="staging", service_name="billing"
    )
    own = client.get(f"{API}/value/timeout", params=params).json()
    assert (own["value"], own["scope"]) == (5, "service")
    other = client.get(f"{API}/value/timeout", params={**params, "service_name": "auth"}).json()
    assert (other["value"], other["scope"]) == (30, "global")


def test_value_missing_in_both_scopes_is_404(client: TestClient) -> None:
    create(client, config_key="x", config_value=1, environment="development")
    response = client.get(
        f"{API}/value/x", params={"environment": "production", "service_name": "a"}
    )
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert "'x'" in response.json()["detail"]


def test_get_by_key_is_exact_scope(client: TestClient) -> None:
    create(client, config_key="k", config_value="global")
    assert client.get(f"{API}/key/k", params={"service_name": "svc"}).status_code == 404
    assert client.get(f"{API}/key/k").json()["config_value"] == "global"


def test_keys_may_contain_slashes(client: TestClient) -> None:
    create(client, config_key="db/primary:host", config_value="10.0.0.1")
    assert client.get(f"{API}/value/db/primary:host").json()["value"] == "10.0.0.1"
    assert client.get(f"{API}/key/db/primary:host").status_code == 200


def test_two_globals_with_the_same_key_cannot_exist(client: TestClient) -> None:
    create(client, config_key="k", config_value=1)
    again = client.post(f"{API}/", json={"config_key": "k", "config_value": 2})
    assert again.status_code == 409
    assert again.json()["title"] == "Already exists"
    # a service value and a global with the same key are different scopes
    create(client, config_key="k", config_value=3, service_name="svc")
    assert client.get(f"{API}/", params={"key_prefix": "k"}).json()["total"] == 2


def test_list_filters_and_paginates(client: TestClient) -> None:
    for i in range(5):
        create(client, config_key=f"app.{i}", config_value=i)
    create(client, config_key="app_x", config_value=0)  # '_' must not act as a LIKE wildcard
    create(client, config_key="appy", config_value=0)
    create(client, config_key="app.9", config_value=9, environment="staging")
    page = client.get(
        f"{API}/", params={"environment": "production", "key_prefix": "app.", "limit": 2}
    )
    body = page.json()
    assert body["total"] == 5
    assert [c["config_key"] for c in body["items"]] == ["app.0", "app.1"]
    rest = client.get(
        f"{API}/", params={"environment": "production", "key_prefix": "app.", "offset": 4}
    ).json()
    assert [c["config_key"] for c in rest["items"]] == ["app.4"]
    assert client.get(f"{API}/", params={"key_prefix": "app_"}).json()["total"] == 1
    assert client.get(f"{API}/").json()["total"] == 8


def test_bulk_merges_service_over_global(client: TestClient) -> None:
    create(client, config_key="a", config_value=1)
    create(client, config_key="b", config_value=2)
    create(client, config_key="b", config_value=20, service_name="svc")
    create(client, config_key="c", config_value=30, service_name="other")
    assert client.get(f"{API}/bulk", params={"service_name": "svc"}).json() == {"a": 1, "b": 20}
    assert client.get(f"{API}/bulk").json() == {"a": 1, "b": 2}


def test_update_by_id_bumps_version_and_records_history(client: TestClient) -> None:
    created = create(client, config_key="k", config_value=1, description="d")
    response = client.put(f"{API}/{created['id']}", json={"config_value": 2})
    assert response.status_code == 200
    assert response.headers["etag"] == '"2"'
    body = response.json()
    assert (body["config_value"], body["version"], body["description"]) == (2, 2, "d")
    assert body["updated_by"] == "anonymous"  # auth disabled here; test_auth.py: token names
    history = client.get(f"{API}/{created['id']}/history").json()
    assert [(h["version"], h["action"]) for h in history] == [(2, "update"), (1, "create")]
    assert history[0]["old_state"]["config_value"] == 1
    assert history[0]["new_state"]["config_value"] == 2
    assert history[0]["actor"] == "anonymous"


def test_update_that_changes_nothing_keeps_the_version(client: TestClient) -> None:
    created = create(client, config_key="k", config_value={"a": 1})
    again = client.put(f"{API}/{created['id']}", json={"config_value": {"a": 1}}).json()
    assert again["version"] == 1
    assert len(client.get(f"{API}/{created['id']}/history").json()) == 1


@pytest.mark.parametrize(
    ("before", "after"),
    [(1, True), (0, False), (True, 1), (2, 2.0), ({"a": 1}, {"a": True}), ([0], [False])],
)
def test_a_change_of_json_type_alone_is_a_change(
    client: TestClient, before: Any, after: Any
) -> None:
    """1 and true are different values, though Python's == calls them equal."""
    created = create(client, config_key="k", config_value=before)
    by_id = client.put(f"{API}/{created['id']}", json={"config_value": after}).json()
    assert by_id["version"] == 2
    by_key = client.put(f"{API}/key/k", json={"value": before}).json()
    assert by_key["version"] == 3
    client.put(f"{API}/key/k", json={"value": after})
    value = client.get(f"{API}/value/k").json()["value"]
    assert (value, type(value)) == (after, type(after))
    history = client.get(f"{API}/{created['id']}/history").json()
    assert [h["version"] for h in history] == [4, 3, 2, 1]


def test_the_order_of_an_objects_keys_is_no_change(client: TestClient) -> None:
    created = create(client, config_key="k", config_value={"a": 1, "b": 2})
    again = client.put(f"{API}/{created['id']}", json={"config_value": {"b": 2, "a": 1}})
    assert again.json()["version"] == 1


def test_a_deleted_items_id_is_never_given_to_another(client: TestClient) -> None:
    """An id names one item for ever: its history must not merge with a newer item's (SQLite
    reuses the highest rowid after a delete unless the table says AUTOINCREMENT)."""
    create(client, config_key="first", config_value=1)
    doomed = create(client, config_key="doomed", config_value="secret", environment="production")
    assert client.delete(f"{API}/{doomed['id']}").status_code == 204
    newer = create(client, config_key="newer", config_value=2, environment="staging")
    assert newer["id"] != doomed["id"]
    keys = {h["key"] for h in client.get(f"{API}/{doomed['id']}/history").json()}
    assert keys == {"doomed"}
    flag = client.post("/api/v1/feature-flags/", json={"flag_key": "gone"}).json()
    assert client.delete(f"/api/v1/feature-flags/{flag['id']}").status_code == 204
    again = client.post(
        "/api/v1/feature-flags/", json={"flag_key": "new", "environment": "staging"}
    )
    assert again.json()["id"] != flag["id"]


def test_set_value_upserts_the_scope(client: TestClient) -> None:
    first = client.put(
        f"{API}/key/feature.limit", params={"service_name": "svc"}, json={"value": 5}
    )
    assert first.status_code == 201
    assert first.json()["version"] == 1
    second = client.put(
        f"{API}/key/feature.limit", params={"service_name": "svc"}, json={"value": 6}
    )
    assert second.status_code == 200
    assert (second.json()["config_value"], second.json()["version"]) == (6, 2)
    assert second.json()["id"] == first.json()["id"]


def test_delete_then_history_still_answers_and_recreate_continues_versions(
    client: TestClient,
) -> None:
    created = create(client, config_key="k", config_value=1)
    assert client.delete(f"{API}/{created['id']}").status_code == 204
    assert client.get(f"{API}/{created['id']}").status_code == 404
    assert client.delete(f"{API}/{created['id']}").status_code == 404
    history = client.get(f"{API}/{created['id']}/history").json()
    assert [(h["version"], h["action"]) for h in history] == [(2, "delete"), (1, "create")]
    assert history[0]["new_state"] is None
    assert history[0]["old_state"]["config_value"] == 1
    recreated = create(client, config_key="k", config_value=7)
    assert recreated["version"] == 3  # versions order every change of the key, across deletes


def test_history_of_an_item_that_never_existed_is_404(client: TestClient) -> None:
    assert client.get(f"{API}/999/history").status_code == 404


class TestIfMatch:
    def test_stale_if_match_is_412_and_changes_nothing(self, client: TestClient) -> None:
        created = create(client, config_key="k", config_value=1)
        client.put(f"{API}/{created['id']}", json={"config_value": 2})
        stale = client.put(
            f"{API}/{created['id']}", json={"config_value": 3}, headers={"If-Match": '"1"'}
        )
        assert stale.status_code == 412
        assert "current version is 2" in stale.json()["detail"]
        assert client.get(f"{API}/{created['id']}").json()["config_value"] == 2
        stale_delete = client.delete(f"{API}/{created['id']}", headers={"If-Match": '"1"'})
        assert stale_delete.status_code == 412
        assert client.get(f"{API}/{created['id']}").status_code == 200

    def test_matching_if_match_succeeds(self, client: TestClient) -> None:
        created = create(client, config_key="k", config_value=1)
        etag = client.get(f"{API}/{created['id']}").headers["etag"]
        ok = client.put(
            f"{API}/{created['id']}", json={"config_value": 2}, headers={"If-Match": etag}
        )
        assert ok.status_code == 200
        assert (
            client.delete(f"{API}/{created['id']}", headers={"If-Match": '"2"'}).status_code == 204
        )

    def test_if_match_on_a_missing_scope_is_412(self, client: TestClient) -> None:
        response = client.put(f"{API}/key/new", json={"value": 1}, headers={"If-Match": "*"})
        assert response.status_code == 412
        assert client.get(f"{API}/key/new").status_code == 404

    def test_malformed_if_match_is_422(self, client: TestClient) -> None:
        created = create(client, config_key="k", config_value=1)
        response = client.put(
            f"{API}/{created['id']}", json={"config_value": 2}, headers={"If-Match": "banana"}
        )
        assert response.status_code == 422
        assert client.get(f"{API}/{created['id']}").json()["version"] == 1


def test_many_writers_at_once_are_all_answered_and_recorded(client: TestClient) -> None:
    """32 concurrent PUTs: none refused (SQLite has one writer; the embedded store queues them
    rather than letting them conflict), and the history holds every one with its old value."""
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    created = create(client, config_key="counter", config_value=0)
    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(
            pool.map(
                lambda i: client.put(f"{API}/{created['id']}", json={"config_value": i}),
                range(1, 33),
            )
        )
    assert [a.status_code for a in answers] == [200] * 32
    history = client.get(f"{API}/{created['id']}/history").json()
    assert [h["version"] for h in history] == list(range(33, 0, -1))
    for newer, older in itertools.pairwise(history):
        assert newer["old_state"]["config_value"] == older["new_state"]["config_value"]
