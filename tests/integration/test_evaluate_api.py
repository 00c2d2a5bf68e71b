"""Evaluation for a context over HTTP (issue 10): POST /feature-flags/evaluate[/{key}], the GET
routes with `properties[NAME]`, explain, the context limit, on SQLite and MariaDB."""

from __future__ import annotations

from typing import Any

from aurora_client.evaluation import bucket_of
from fastapi.testclient import TestClient

API = "/api/v1/feature-flags"

BETA_DE = {
    "id": "beta-de",
    "constraints": [
        {"context_name": "country", "operator": "IN", "values": ["DE", "AT"]},
        {"context_name": "appVersion", "operator": "SEMVER_GTE", "value": "2.3.0"},
    ],
    "variants": [
        {"name": "blue", "weight": 500, "payload": {"type": "string", "value": "#00f"}},
        {"name": "red", "weight": 500, "payload": {"type": "json", "value": '{"r": 1}'}},
    ],
}
EVERYONE_ELSE_10 = {"id": "ten", "rollout": {"percentage": 10, "stickiness": "userId"}}


def create(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post(f"{API}/", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def evaluate(client: TestClient, key: str, context: dict[str, Any], **params: Any) -> Any:
    response = client.post(
        f"{API}/evaluate/{key}", json={"context": context}, params=params or None
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_a_rule_on_context_decides_and_names_itself(client: TestClient) -> None:
    create(client, flag_key="checkout", is_enabled=True, rules=[BETA_DE, EVERYONE_ELSE_10])
    beta = {"userId": "7", "properties": {"country": "DE", "appVersion": "2.4.1"}}
    answer = evaluate(client, "checkout", beta)
    assert answer["enabled"] is True
    assert (answer["rule_index"], answer["rule_id"]) == (0, "beta-de")
    assert answer["reason"] == "SPLIT"  # two weighted variants split the matching users
    assert answer["variant"]["name"] in {"blue", "red"}
    assert answer["variant"]["feature_enabled"] is True
    assert answer["flag_key"] == "checkout"
    assert answer["environment"] == "production"
    assert answer["version"] == 1

    old_app = {"userId": "7", "properties": {"country": "DE", "appVersion": "2.2.9"}}
    inside = next(u for u in map(str, range(1000)) if bucket_of("checkout", u) <= 10)
    outside = next(u for u in map(str, range(1000)) if bucket_of("checkout", u) > 10)
    assert evaluate(client, "checkout", {**old_app, "userId": inside})["rule_id"] == "ten"
    miss = evaluate(client, "checkout", {**old_app, "userId": outside})
    assert (miss["enabled"], miss["reason"], miss["rule_index"]) == (False, "DEFAULT", None)
    assert miss["variant"] == {"name": "disabled", "enabled": False, "feature_enabled": False}


def test_a_disabled_flag_answers_the_disabled_variant(client: TestClient) -> None:
    create(client, flag_key="off", is_enabled=False, rules=[BETA_DE])
    answer = evaluate(client, "off", {"properties": {"country": "DE", "appVersion": "3.0.0"}})
    assert (answer["enabled"], answer["reason"]) == (False, "DISABLED")
    assert answer["variant"] == {"name": "disabled", "enabled": False, "feature_enabled": False}


def test_evaluate_all_answers_every_flag_of_the_environment(client: TestClient) -> None:
    create(client, flag_key="checkout", is_enabled=True, rules=[BETA_DE])
    create(client, flag_key="plain", is_enabled=True, rollout_percentage=100)
    create(client, flag_key="elsewhere", is_enabled=True, environment="staging")
    response = client.post(
        f"{API}/evaluate",
        json={"context": {"properties": {"country": "AT", "appVersion": "9.0.0"}}},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["environment"] == "production"
    assert set(body["flags"]) == {"checkout", "plain"}
    assert body["flags"]["checkout"]["enabled"] is True
    assert body["flags"]["plain"]["reason"] == "DEFAULT"
    assert body["flags"]["plain"]["variant"]["name"] == "disabled"  # on, but no variants
    assert body["flags"]["plain"]["variant"]["feature_enabled"] is True


def test_get_routes_take_properties_like_unleash_frontend(client: TestClient) -> None:
    create(client, flag_key="checkout", is_enabled=True, rules=[BETA_DE])
    params = {"user_id": "1", "properties[country]": "DE", "properties[appVersion]": "2.3.0"}
    assert client.get(f"{API}/check/checkout", params=params).json() == {"enabled": True}
    params["properties[country]"] = "FR"
    assert client.get(f"{API}/check/checkout", params=params).json() == {"enabled": False}
    bulk = client.get(f"{API}/bulk", params={**params, "properties[country]": "AT"}).json()
    assert bulk == {"checkout": True}
    legacy = client.get(f"{API}/evaluate/checkout", params=params).json()
    assert (legacy["enabled"], legacy["reason"]) == (False, "ROLLOUT_OUT")


def test_plain_flags_keep_their_cohorts_through_every_route(client: TestClient) -> None:
    create(client, flag_key="grow", is_enabled=True, rollout_percentage=37)
    for user in map(str, range(300)):
        expected = bucket_of("grow", user) <= 37
        assert evaluate(client, "grow", {"userId": user})["enabled"] is expected
        assert client.get(f"{API}/check/grow", params={"user_id": user}).json() == {
            "enabled": expected
        }


def test_explain_says_why_per_rule_and_constraint(client: TestClient) -> None:
    create(client, flag_key="checkout", is_enabled=True, rules=[BETA_DE])
    context = {"properties": {"country": "FR", "appVersion": "2.4.0"}}
    answer = evaluate(client, "checkout", context, explain="true")
    explain = answer["explain"]
    (rule,) = explain["rules"]
    assert (rule["id"], rule["matched"]) == ("beta-de", False)
    country, version = rule["constraints"]
    assert (country["context_name"], country["matched"]) == ("country", False)
    assert country["context_value"] == "FR"
    assert version["matched"] is True
    assert answer["enabled"] is False
    plain = evaluate(client, "checkout", context)
    assert "explain" not in plain


def test_a_missing_flag_is_404_and_bad_input_422(client: TestClient) -> None:
    missing = client.post(f"{API}/evaluate/nope", json={"context": {}})
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    unknown_field = client.post(f"{API}/evaluate/nope", json={"context": {"user": "1"}})
    assert unknown_field.status_code == 422
    bad_env = client.post(f"{API}/evaluate", json={"environment": "nowhere"})
    assert bad_env.status_code == 422
    assert "nowhere" in bad_env.json()["detail"]


def test_a_context_over_the_limit_is_413_naming_it(client: TestClient) -> None:
    create(client, flag_key="f", is_enabled=True)
    huge = {"properties": {f"p{i}": "x" * 1000 for i in range(20)}}
    response = client.post(f"{API}/evaluate/f", json={"context": huge})
    assert response.status_code == 413, response.text
    assert "AURORA_MAX_CONTEXT_BYTES" in response.json()["detail"]
