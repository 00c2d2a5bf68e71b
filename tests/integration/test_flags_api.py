"""The feature-flag API, end to end through HTTP, on SQLite and MariaDB."""

from __future__ import annotations

from typing import Any

from aurora_client.evaluation import bucket_of
from fastapi.testclient import TestClient

API = "/api/v1/feature-flags"


def create(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post(f"{API}/", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def users_with(flag_key: str, predicate: Any, count: int) -> list[str]:
    found = [str(u) for u in range(10_000) if predicate(bucket_of(flag_key, str(u)))]
    return found[:count]


def test_seed_example(client: TestClient) -> None:
    created = client.post(
        f"{API}/",
        json={
            "flag_name": "New Dashboard",
            "flag_key": "new_dashboard",
            "description": "Enable new dashboard UI",
            "is_enabled": True,
            "rollout_percentage": 25,
            "environment": "production",
        },
    )
    assert created.status_code == 201
    check = client.get(f"{API}/check/new_dashboard", params={"user_id": "123"})
    assert check.status_code == 200
    assert check.json() == {"enabled": bucket_of("new_dashboard", "123") <= 25}
    rollout = client.put(f"{API}/rollout/new_dashboard", params={"percentage": 50})
    assert rollout.status_code == 200
    assert (rollout.json()["rollout_percentage"], rollout.json()["version"]) == (50, 2)
    after = client.get(f"{API}/check/new_dashboard", params={"user_id": "123"}).json()
    assert after == {"enabled": bucket_of("new_dashboard", "123") <= 50}


def test_defaults(client: TestClient) -> None:
    flag = create(client, flag_key="f")
    assert (flag["flag_name"], flag["is_enabled"], flag["rollout_percentage"]) == ("f", False, 100)
    assert flag["environment"] == "production"


def test_evaluate_explains_the_result(client: TestClient) -> None:
    create(client, flag_key="beta", is_enabled=True, rollout_percentage=30)
    inside = users_with("beta", lambda b: b <= 30, 1)[0]
    outside = users_with("beta", lambda b: b > 30, 1)[0]
    yes = client.get(f"{API}/evaluate/beta", params={"user_id": inside}).json()
    assert yes == {
        "flag_key": "beta",
        "environment": "production",
        "user_id": inside,
        "enabled": True,
        "reason": "ROLLOUT_IN",
        "bucket": bucket_of("beta", inside),
        "rollout_percentage": 30,
        "version": 1,
    }
    no = client.get(f"{API}/evaluate/beta", params={"user_id": outside}).json()
    assert (no["enabled"], no["reason"]) == (False, "ROLLOUT_OUT")
    anonymous = client.get(f"{API}/evaluate/beta").json()
    assert (anonymous["enabled"], anonymous["reason"], anonymous["bucket"]) == (
        False,
        "NO_USER",
        None,
    )


def test_raising_the_rollout_never_turns_a_user_off(client: TestClient) -> None:
    create(client, flag_key="grow", is_enabled=True, rollout_percentage=0)
    users = [str(u) for u in range(200)]
    previously_on: set[str] = set()
    for percentage in (0, 10, 25, 50, 75, 100):
        client.put(f"{API}/rollout/grow", params={"percentage": percentage})
        on = {
            u
            for u in users
            if client.get(f"{API}/check/grow", params={"user_id": u}).json()["enabled"]
        }
        assert previously_on <= on
        previously_on = on
    assert previously_on == set(users)


def test_toggle_flips_or_sets(client: TestClient) -> None:
    create(client, flag_key="t", is_enabled=False)
    assert client.put(f"{API}/toggle/t").json()["is_enabled"] is True
    assert client.put(f"{API}/toggle/t").json()["is_enabled"] is False
    on = client.put(f"{API}/toggle/t", params={"enabled": "true"}).json()
    assert (on["is_enabled"], on["version"]) == (True, 4)
    again = client.put(f"{API}/toggle/t", params={"enabled": "true"}).json()
    assert again["version"] == 4  # idempotent: no new version
    assert client.get(f"{API}/check/t").json() == {"enabled": True}  # 100 %: on without a user


def test_unknown_flag_is_a_clear_404(client: TestClient) -> None:
    for path in ("evaluate/nope", "check/nope", "key/nope"):
        response = client.get(f"{API}/{path}", params={"user_id": "1"})
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert (
            response.json()["detail"]
            == "feature flag 'nope' does not exist in environment 'production'"
        )
    assert client.put(f"{API}/toggle/nope").status_code == 404
    assert client.put(f"{API}/rollout/nope", params={"percentage": 5}).status_code == 404


def test_flags_are_scoped_by_environment(client: TestClient) -> None:
    create(client, flag_key="f", is_enabled=True, environment="staging")
    assert client.get(f"{API}/check/f").status_code == 404
    assert client.get(f"{API}/check/f", params={"environment": "staging"}).json() == {
        "enabled": True
    }
    again = client.post(f"{API}/", json={"flag_key": "f", "environment": "staging"})
    assert again.status_code == 409


def test_bulk_evaluates_for_the_user(client: TestClient) -> None:
    create(client, flag_key="on", is_enabled=True)
    create(client, flag_key="off", is_enabled=False)
    create(client, flag_key="half", is_enabled=True, rollout_percentage=50)
    inside = users_with("half", lambda b: b <= 50, 1)[0]
    assert client.get(f"{API}/bulk").json() == {"on": True, "off": False, "half": False}
    assert client.get(f"{API}/bulk", params={"user_id": inside}).json() == {
        "on": True,
        "off": False,
        "half": True,
    }


def test_update_list_delete_and_history(client: TestClient) -> None:
    flag = create(client, flag_key="f", flag_name="F")
    updated = client.put(
        f"{API}/{flag['id']}",
        json={"flag_name": "Feature", "rollout_percentage": 40, "is_enabled": True},
    )
    assert updated.status_code == 200
    assert updated.headers["etag"] == '"2"'
    listed = client.get(f"{API}/", params={"key_prefix": "f"}).json()
    assert listed["total"] == 1
    assert listed["items"][0]["flag_name"] == "Feature"
    assert client.get(f"{API}/{flag['id']}", headers={}).json()["rollout_percentage"] == 40
    stale = client.delete(f"{API}/{flag['id']}", headers={"If-Match": '"1"'})
    assert stale.status_code == 412
    assert client.delete(f"{API}/{flag['id']}").status_code == 204
    assert client.get(f"{API}/{flag['id']}").status_code == 404
    history = client.get(f"{API}/{flag['id']}/history").json()
    assert [(h["version"], h["action"], h["actor"]) for h in history] == [
        (3, "delete", "anonymous"),
        (2, "update", "anonymous"),
        (1, "create", "anonymous"),
    ]
    assert history[1]["old_state"]["rollout_percentage"] == 100
    assert history[1]["new_state"]["rollout_percentage"] == 40


def test_update_treats_null_as_unchanged_and_refuses_nothing_to_do(client: TestClient) -> None:
    flag = create(client, flag_key="f", description="d")
    unchanged = client.put(f"{API}/{flag['id']}", json={"is_enabled": None, "flag_name": None})
    assert (unchanged.status_code, unchanged.json()["version"]) == (200, 1)
    assert client.put(f"{API}/{flag['id']}", json={}).status_code == 422
    cleared = client.put(f"{API}/{flag['id']}", json={"description": None}).json()
    assert (cleared["description"], cleared["version"]) == (None, 2)
