"""`POST /api/v1/import/unleash` (issue 10): Unleash's client features document in, all or
nothing, on SQLite and MariaDB."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

IMPORT = "/api/v1/import/unleash"
F = "/api/v1/feature-flags"

DOCUMENT: dict[str, Any] = {
    "version": 1,
    "segments": [
        {
            "id": 7,
            "name": "beta",
            "constraints": [{"contextName": "userId", "operator": "IN", "values": ["1", "2"]}],
        }
    ],
    "features": [
        {
            "name": "Hellø_Wørld",
            "enabled": True,
            "strategies": [
                {
                    "name": "flexibleRollout",
                    "parameters": {"rollout": "100", "stickiness": "default", "groupId": "g"},
                    "segments": [7],
                    "constraints": [
                        {"contextName": "country", "operator": "IN", "values": ["DE"]},
                        {"contextName": "n", "operator": "NUM_GT", "value": "not a number"},
                    ],
                }
            ],
            "variants": [
                {"name": "a", "weight": 1000, "payload": {"type": "string", "value": "x"}}
            ],
        },
        {
            "name": "child",
            "enabled": True,
            "strategies": [{"name": "default"}],
            "dependencies": [{"feature": "missing-parent"}],
        },
        {"name": "plain", "enabled": True, "strategies": []},
    ],
}


def _flags(client: TestClient) -> dict[str, dict[str, Any]]:
    page = client.get(f"{F}/", params={"environment": "production"}).json()
    return {item["flag_key"]: item for item in page["items"]}


def test_import_creates_reports_and_evaluates_as_unleash(client: TestClient) -> None:
    response = client.post(IMPORT, json=DOCUMENT)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["dry_run"] is False
    assert report["environment"] == "production"
    created = {(item["kind"], item["key"]) for item in report["created"]}
    assert created == {
        ("segment", "beta"),
        ("flag", "Hellø_Wørld"),
        ("flag", "child"),
        ("flag", "plain"),
    }
    assert report["changed"] == []
    assert report["unchanged"] == []
    warnings = " ".join(report["warnings"])
    assert "missing-parent" in warnings
    assert "not a number" in warnings or "NUM_GT" in warnings

    flags = _flags(client)
    assert set(flags) == {"Hellø_Wørld", "child", "plain"}
    # The segment holds and the constraint Unleash cannot parse keeps the rule from matching.
    answer = client.post(
        f"{F}/evaluate/Hellø_Wørld",
        json={"context": {"userId": "1", "properties": {"country": "DE"}}},
    ).json()
    assert answer["enabled"] is False
    assert client.post(f"{F}/evaluate/child", json={}).json()["reason"] == "PREREQUISITE_FAILED"
    assert client.post(f"{F}/evaluate/plain", json={}).json()["enabled"] is True


def test_the_same_document_again_changes_nothing(client: TestClient) -> None:
    assert client.post(IMPORT, json=DOCUMENT).status_code == 200
    before = _flags(client)
    again = client.post(IMPORT, json=DOCUMENT).json()
    assert again["created"] == []
    assert again["changed"] == []
    assert len(again["unchanged"]) == 4
    assert {k: v["version"] for k, v in _flags(client).items()} == {
        k: v["version"] for k, v in before.items()
    }
    changed = {**DOCUMENT, "features": [{**DOCUMENT["features"][2], "enabled": False}]}
    third = client.post(IMPORT, json=changed).json()
    assert third["changed"] == [{"kind": "flag", "key": "plain", "version": 2}]
    history = client.get(f"{F}/{_flags(client)['plain']['id']}/history").json()
    assert [entry["action"] for entry in history] == ["update", "create"]


def test_a_dry_run_says_what_would_change_and_writes_nothing(client: TestClient) -> None:
    response = client.post(IMPORT, params={"dry_run": "true"}, json=DOCUMENT)
    assert response.status_code == 200, response.text
    assert response.json()["dry_run"] is True
    assert len(response.json()["created"]) == 4
    assert _flags(client) == {}
    assert client.get("/api/v1/segments/beta").status_code == 404


def test_a_custom_strategy_is_422_naming_the_flag_and_nothing_is_written(
    client: TestClient,
) -> None:
    custom = {
        "name": "custom-one",
        "enabled": True,
        "strategies": [{"name": "myOwnStrategy", "parameters": {}}],
    }
    document = {**DOCUMENT, "features": [*DOCUMENT["features"], custom]}
    response = client.post(IMPORT, json=document)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "custom-one" in response.json()["detail"]
    assert "myOwnStrategy" in response.json()["detail"]
    assert _flags(client) == {}


def test_a_name_our_keys_cannot_carry_refuses_the_whole_import(client: TestClient) -> None:
    bad = {"name": "tab\there", "enabled": True, "strategies": []}
    document = {**DOCUMENT, "features": [*DOCUMENT["features"], bad]}
    response = client.post(IMPORT, json=document)
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert [e["pointer"] for e in errors] == ["/features/3/name"]
    assert _flags(client) == {}
    assert client.get("/api/v1/segments/beta").status_code == 404


def test_not_a_document_is_422(client: TestClient) -> None:
    assert client.post(IMPORT, json={"features": "nope"}).status_code == 422
    assert client.post(IMPORT, json=[1]).status_code == 422
    unknown_env = client.post(IMPORT, params={"environment": "mars"}, json=DOCUMENT)
    assert unknown_env.status_code in {403, 422}


def test_the_write_limits_hold_for_an_import_too(client: TestClient) -> None:
    many = [str(n) for n in range(1001)]
    constraint = {"contextName": "userId", "operator": "IN", "values": many}
    feature = {
        "name": "big",
        "enabled": True,
        "strategies": [{"name": "default", "constraints": [constraint]}],
    }
    response = client.post(IMPORT, json={"version": 1, "features": [feature]})
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert error["pointer"] == "/features/0/strategies/0/constraints/0/values"
    assert error["limit"] == "AURORA_MAX_VALUES_PER_CONSTRAINT"
    assert _flags(client) == {}
