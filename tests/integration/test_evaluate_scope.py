"""The evaluate-only scope (issue 10): `evaluate:<env>` evaluates flags there and reads nothing
else, so a browser or a gateway can hold it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from tests.conftest import make_settings

ADMIN = "test-admin-secret-evaluate-0123"
F = "/api/v1/feature-flags"


@pytest.fixture
def evaluator(database_url: str) -> Iterator[tuple[TestClient, dict[str, str]]]:
    settings = make_settings(database_url, auth="enabled", admin_token=ADMIN)
    with TestClient(create_app(settings)) as client:
        admin = {"Authorization": f"Bearer {ADMIN}"}
        made = client.post(
            "/api/v1/tokens/",
            json={"name": "edge", "scopes": ["evaluate:production"]},
            headers=admin,
        )
        assert made.status_code == 201, made.text
        rule = {"constraints": [{"context_name": "country", "operator": "IN", "values": ["DE"]}]}
        for env in ("production", "staging"):
            flag = {"flag_key": "f", "is_enabled": True, "environment": env, "rules": [rule]}
            assert client.post(f"{F}/", json=flag, headers=admin).status_code == 201
        config = {"config_key": "secret", "config_value": "s3cr3t"}
        assert client.post("/api/v1/configurations/", json=config, headers=admin).status_code == 201
        yield client, {"Authorization": f"Bearer {made.json()['token']}"}


def test_it_evaluates_in_its_environment(evaluator: tuple[TestClient, dict[str, str]]) -> None:
    client, edge = evaluator
    body = {"context": {"properties": {"country": "DE"}}}
    one = client.post(f"{F}/evaluate/f", json=body, headers=edge)
    assert (one.status_code, one.json()["enabled"]) == (200, True)
    assert client.post(f"{F}/evaluate", json=body, headers=edge).json()["flags"]["f"]["enabled"]
    query = {"properties[country]": "DE"}
    assert client.get(f"{F}/check/f", params=query, headers=edge).json() == {"enabled": True}
    assert client.get(f"{F}/bulk", params=query, headers=edge).json() == {"f": True}
    assert client.get(f"{F}/evaluate/f", params=query, headers=edge).status_code == 200


def test_it_reads_nothing_else(evaluator: tuple[TestClient, dict[str, str]]) -> None:
    client, edge = evaluator
    refused = [
        ("GET", f"{F}/key/f"),  # the definition: rules, segments' names
        ("GET", f"{F}/?environment=production"),
        ("GET", "/api/v1/configurations/value/secret"),
        ("GET", "/api/v1/configurations/bulk"),
        ("GET", "/api/v1/stream"),
        ("PUT", f"{F}/toggle/f"),
    ]
    for method, path in refused:
        response = client.request(method, path, headers=edge)
        assert response.status_code == 403, (method, path, response.text)
    explain = client.post(f"{F}/evaluate/f?explain=true", json={"context": {}}, headers=edge)
    assert explain.status_code == 403  # explain shows rules and segment contents
    other_env = client.post(f"{F}/evaluate/f", json={"environment": "staging"}, headers=edge)
    assert other_env.status_code == 403
    assert client.get(f"{F}/check/f?environment=staging", headers=edge).status_code == 403


def test_authorization_comes_before_the_body(evaluator: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = evaluator
    made = client.post(
        "/api/v1/tokens/",
        json={"name": "stage-edge", "scopes": ["evaluate:staging"]},
        headers={"Authorization": f"Bearer {ADMIN}"},
    ).json()
    staging_only = {
        "Authorization": f"Bearer {made['token']}",
        "Content-Type": "application/json",
    }
    # A malformed body to a route the token may use at all: 400 after the scope passes.
    assert client.post(f"{F}/evaluate", content=b"{", headers=staging_only).status_code == 400
    # No token: 401 whatever the body.
    json = {"Content-Type": "application/json"}
    assert client.post(f"{F}/evaluate", content=b"{", headers=json).status_code == 401
    # The environment named in the body is checked once the body is read.
    production = client.post(f"{F}/evaluate", json={}, headers=staging_only)
    assert production.status_code == 403
