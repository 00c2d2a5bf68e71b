"""Access control: every /api/v1 route x no token / bad token / wrong scope / right scope."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from service.app import create_app
from service.settings import Settings
from tests.conftest import make_settings

ADMIN_SECRET = "test-admin-secret-0123456789"
C = "/api/v1/configurations"
F = "/api/v1/feature-flags"
S = "/api/v1/segments"
IN_1 = {"context_name": "userId", "operator": "IN", "values": ["1"]}


@pytest.fixture
def secured(
    database_url: str, request: pytest.FixtureRequest
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    extra: dict[str, Any] = {}
    if not database_url.startswith("sqlite"):
        from tests.backends import redis_url  # noqa: PLC0415

        extra = {"redis_url": redis_url(), "redis_prefix": request.getfixturevalue("redis_prefix")}
    settings = make_settings(
        database_url, auth="enabled", admin_token=ADMIN_SECRET, token_cache_seconds=60, **extra
    )
    with TestClient(create_app(settings)) as client:
        admin = {"Authorization": f"Bearer {ADMIN_SECRET}"}
        tokens = {"admin": ADMIN_SECRET}
        for name, scopes in {
            "reader": ["read"],
            "staging-reader": ["read:staging"],
            "prod-writer": ["write:production"],
            "staging-writer": ["write:staging"],
        }.items():
            made = client.post(
                "/api/v1/tokens/", json={"name": name, "scopes": scopes}, headers=admin
            )
            assert made.status_code == 201, made.text
            tokens[name] = made.json()["token"]
        yield client, tokens


def seed(client: TestClient, admin: str) -> dict[str, int]:
    h = {"Authorization": f"Bearer {admin}"}
    config = client.post(f"{C}/", json={"config_key": "k", "config_value": 1}, headers=h).json()
    flag = client.post(f"{F}/", json={"flag_key": "f", "is_enabled": True}, headers=h).json()
    return {"config": config["id"], "flag": flag["id"]}


# (method, path, body, who may, who may not[, its answer]). Everything is in production. A token
# that may not read production gets the 404 of a missing id on a by-id route (issue 9).
def matrix(ids: dict[str, int]) -> list[tuple[Any, ...]]:
    c, f = ids["config"], ids["flag"]
    return [
        ("POST", f"{C}/", {"config_key": "n", "config_value": 1}, "prod-writer", "reader"),
        ("GET", f"{C}/?environment=production", None, "reader", "staging-reader"),
        ("GET", f"{C}/bulk", None, "reader", "staging-reader"),
        ("GET", f"{C}/key/k", None, "reader", "staging-reader"),
        ("PUT", f"{C}/key/k", {"value": 2}, "prod-writer", "staging-writer"),
        ("GET", f"{C}/value/k", None, "reader", "staging-reader"),
        ("GET", f"{C}/{c}", None, "reader", "staging-reader", 404),
        ("PUT", f"{C}/{c}", {"config_value": 3}, "prod-writer", "reader"),
        ("GET", f"{C}/{c}/history", None, "reader", "staging-reader", 404),
        ("DELETE", f"{C}/{c}", None, "prod-writer", "staging-writer", 404),
        ("POST", f"{F}/", {"flag_key": "g"}, "prod-writer", "staging-writer"),
        ("GET", f"{F}/?environment=production", None, "reader", "staging-reader"),
        ("GET", f"{F}/bulk", None, "reader", "staging-reader"),
        ("GET", f"{F}/key/f", None, "reader", "staging-reader"),
        ("GET", f"{F}/evaluate/f?user_id=1", None, "reader", "staging-reader"),
        ("GET", f"{F}/check/f?user_id=1", None, "reader", "staging-reader"),
        ("POST", f"{F}/evaluate/f", {"context": {}}, "reader", "staging-reader"),
        ("POST", f"{F}/evaluate", {"context": {}}, "reader", "staging-reader"),
        ("POST", "/api/v1/import/unleash", {"version": 1, "features": []}, "prod-writer", "reader"),
        ("PUT", f"{F}/toggle/f", None, "prod-writer", "reader"),
        ("PUT", f"{F}/rollout/f?percentage=5", None, "prod-writer", "staging-writer"),
        ("GET", f"{F}/{f}", None, "reader", "staging-reader", 404),
        ("PUT", f"{F}/{f}", {"rollout_percentage": 6}, "prod-writer", "reader"),
        ("GET", f"{F}/{f}/history", None, "reader", "staging-reader", 404),
        ("PUT", f"{F}/rules/f", {"rules": [{"constraints": [IN_1]}]}, "prod-writer", "reader"),
        ("PUT", f"{F}/variants/f", {"variants": []}, "prod-writer", "staging-writer"),
        ("PUT", f"{F}/prerequisites/f", {"prerequisites": []}, "prod-writer", "reader"),
        ("DELETE", f"{F}/{f}", None, "prod-writer", "staging-writer", 404),
        ("POST", f"{S}/", {"name": "s"}, "prod-writer", "staging-writer"),
        ("GET", f"{S}/?environment=production", None, "reader", "staging-reader"),
        ("GET", f"{S}/s", None, "reader", "staging-reader"),
        ("PUT", f"{S}/s", {"description": "d"}, "prod-writer", "reader"),
        ("GET", f"{S}/s/history", None, "reader", "staging-reader"),
        ("DELETE", f"{S}/s", None, "prod-writer", "staging-writer"),
        ("GET", "/api/v1/stream", None, "", "staging-reader"),  # allowed case: tests/e2e
        ("POST", "/api/v1/tokens/", {"name": "x", "scopes": ["read"]}, "admin", "prod-writer"),
        ("GET", "/api/v1/tokens/", None, "admin", "reader"),
        ("DELETE", "/api/v1/tokens/x", None, "admin", "prod-writer"),
    ]


def test_the_matrix_covers_every_api_route(secured: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = secured
    routes = {
        (method.upper(), path)
        for path, operations in client.get("/openapi.json").json()["paths"].items()
        if path.startswith("/api/v1")
        for method in operations
    }
    assert len(routes) == 38  # so that this test can never pass on an empty set
    covered = set()
    for method, path, *_ in matrix({"config": 1, "flag": 1}):
        for route_method, template in routes:
            prefix = template.split("{", 1)[0]
            if (
                route_method == method
                and path.split("?")[0].startswith(prefix)
                and ("{" in template or path.split("?")[0] == template)
            ):
                covered.add((route_method, template))
    assert routes - covered == set()


def test_every_route_refuses_without_a_token_and_with_the_wrong_scope(
    secured: tuple[TestClient, dict[str, str]],
) -> None:
    client, tokens = secured
    ids = seed(client, tokens["admin"])
    for method, path, body, allowed, refused, *answer in matrix(ids):
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
            response = client.request(method, path, json=body, headers=headers)
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert response.headers["content-type"] == "application/problem+json"
        wrong = client.request(
            method, path, json=body, headers={"Authorization": f"Bearer {tokens[refused]}"}
        )
        assert wrong.status_code == (answer or [403])[0], (method, path, refused, wrong.text)
        assert wrong.headers["content-type"] == "application/problem+json"
        if allowed:
            right = client.request(
                method, path, json=body, headers={"Authorization": f"Bearer {tokens[allowed]}"}
            )
            assert right.status_code < 400, (method, path, allowed, right.text)


def problem_shape(response: Any, item_id: int) -> tuple[Any, ...]:
    """What a 404 tells: everything but the id the caller sent itself."""
    body = response.json()
    return (
        response.status_code,
        response.headers["content-type"],
        body["type"],
        body["title"],
        re.sub(rf"\b{item_id}\b", "<id>", body["detail"]),
        re.sub(rf"\b{item_id}\b", "<id>", body["instance"]),
        sorted(body),
    )


def test_an_id_the_token_may_not_read_answers_like_a_missing_one(
    secured: tuple[TestClient, dict[str, str]],
) -> None:
    """By-id routes cannot know the environment before the lookup: an item where the token may
    not read must not be told apart from no item at all (issue 9)."""
    client, tokens = secured
    ids = seed(client, tokens["admin"])  # in production
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    staging = {"config_key": "s", "config_value": 1, "environment": "staging"}
    own = client.post(f"{C}/", json=staging, headers=admin).json()["id"]
    missing = 10**9
    bodies = {C: {"config_value": 5}, F: {"rollout_percentage": 5}}
    for token in ("staging-reader", "staging-writer"):
        h = {"Authorization": f"Bearer {tokens[token]}"}
        for base, item in ((C, ids["config"]), (F, ids["flag"])):
            for method, tail, body in (
                ("GET", "", None),
                ("GET", "/history", None),
                ("PUT", "", bodies[base]),
                ("DELETE", "", None),
            ):
                if method != "GET" and token == "staging-reader":
                    continue  # it may write nowhere: 403 before any lookup (next test)
                hidden = client.request(method, f"{base}/{item}{tail}", json=body, headers=h)
                absent = client.request(method, f"{base}/{missing}{tail}", json=body, headers=h)
                assert hidden.status_code == 404, (token, method, base, tail, hidden.text)
                assert problem_shape(hidden, item) == problem_shape(absent, missing)
        assert client.get(f"{C}/{own}", headers=h).status_code == 200  # what it may read: found
        assert client.get(f"{C}/{own}/history", headers=h).status_code == 200
    # An item it may read but not change: 403, as it already knows the item exists.
    reader = {"Authorization": f"Bearer {tokens['reader']}"}
    assert client.get(f"{C}/{ids['config']}", headers=reader).status_code == 200
    staging_writer = {"Authorization": f"Bearer {tokens['staging-writer']}"}
    read_prod = client.post(
        "/api/v1/tokens/",
        json={"name": "read-all-write-staging", "scopes": ["read", "write:staging"]},
        headers=admin,
    ).json()["token"]
    both = {"Authorization": f"Bearer {read_prod}"}
    assert client.delete(f"{C}/{ids['config']}", headers=both).status_code == 403
    assert client.put(f"{F}/{ids['flag']}", json=bodies[F], headers=both).status_code == 403
    # Nothing was changed by any of it.
    assert client.get(f"{C}/{ids['config']}", headers=admin).json()["version"] == 1
    assert client.get(f"{F}/{ids['flag']}", headers=admin).json()["version"] == 1
    assert client.delete(f"{C}/{own}", headers=staging_writer).status_code == 204


def test_a_write_the_token_may_not_make_is_refused_before_its_input_is_validated(
    secured: tuple[TestClient, dict[str, str]],
) -> None:
    """403 before 422: a refusal says nothing about what the input would need (issue 9)."""
    client, tokens = secured
    ids = seed(client, tokens["admin"])
    c, f = ids["config"], ids["flag"]
    bad_json = b'{"value": '
    writes: list[tuple[str, str, Any]] = [
        # environment in the query (production when omitted): the token must write it
        ("PUT", f"{C}/key/k?environment=production", {"nope": 1}),
        ("PUT", f"{C}/key/k", bad_json),
        ("PUT", f"{C}/key/k?environment=production&service_name=bad%20name", {"value": 1}),
        ("PUT", f"{C}/key/k?environment=moon", {"value": 1}),
        ("PUT", f"{C}/key/k?environmnet=staging", {"value": 1}),  # misspelt: production
        ("PUT", f"{F}/toggle/f?environment=production&enabled=maybe", None),
        ("PUT", f"{F}/toggle/f?bogus=1", None),
        ("PUT", f"{F}/rollout/f?percentage=500", None),
        ("PUT", f"{F}/rollout/f", None),
        ("PUT", f"{F}/rollout/{'x' * 300}?percentage=5", None),
        ("PUT", f"{F}/rules/f", {"rules": [{"constraints": [{"operator": "NOPE"}]}]}),
        ("PUT", f"{F}/variants/f?environment=moon", {"variants": []}),
        ("PUT", f"{F}/prerequisites/f", bad_json),
        ("PUT", f"{S}/s?environment=production", {"constraints": 1}),
        ("DELETE", f"{S}/nope?bogus=1", None),
    ]
    for token in ("reader", "staging-writer"):
        h = {"Authorization": f"Bearer {tokens[token]}"}
        for method, path, body in writes:
            kind = {"content": body} if isinstance(body, bytes) else {"json": body}
            answer = client.request(
                method, path, headers=h | {"Content-Type": "application/json"}, **kind
            )
            assert answer.status_code == 403, (token, method, path, answer.text)
            assert answer.json()["type"] == "urn:aurora-config:problem:forbidden"
    # The environment is in the body or the item: a token that may write nowhere is refused first.
    reader = {"Authorization": f"Bearer {tokens['reader']}"}
    for method, path, body in (
        ("POST", f"{C}/", {"config_value": 1}),
        ("POST", f"{C}/", bad_json),
        ("POST", f"{F}/?bogus=1", {"flag_key": "g"}),
        ("PUT", f"{C}/{c}", {"config_value": 1, "nope": 2}),
        ("PUT", f"{F}/{f}", bad_json),
        ("PUT", f"{F}/0", {"rollout_percentage": 5}),
        ("DELETE", f"{F}/{f}?bogus=1", None),
        ("POST", f"{S}/", {"name": "a/b", "constraints": "x"}),
        ("POST", f"{S}/", bad_json),
    ):
        kind = {"content": body} if isinstance(body, bytes) else {"json": body}
        answer = client.request(
            method, path, headers=reader | {"Content-Type": "application/json"}, **kind
        )
        assert answer.status_code == 403, (method, path, answer.text)
    # Tokens are the admin's: anyone else is refused before the body is read.
    for method, path, body in (
        ("POST", "/api/v1/tokens/", bad_json),
        ("POST", "/api/v1/tokens/", {"name": "x y"}),
        ("DELETE", "/api/v1/tokens/not%20a%20name", None),
    ):
        kind = {"content": body} if isinstance(body, bytes) else {"json": body}
        for token in ("reader", "prod-writer"):
            h = {"Authorization": f"Bearer {tokens[token]}", "Content-Type": "application/json"}
            answer = client.request(method, path, headers=h, **kind)
            assert answer.status_code == 403, (token, method, path, answer.text)
    # A token that may write somewhere: a bad body is a 422, a good one for elsewhere a 403.
    staging = {"Authorization": f"Bearer {tokens['staging-writer']}"}
    assert client.post(f"{C}/", json={"config_value": 1}, headers=staging).status_code == 422
    assert client.post(f"{F}/", json={"flag_key": "g//"}, headers=staging).status_code == 422
    good = {"config_key": "n", "config_value": 1, "environment": "production"}
    assert client.post(f"{C}/", json=good, headers=staging).status_code == 403
    assert (
        client.post(f"{C}/", json=good | {"environment": "staging"}, headers=staging).status_code
        == 201
    )
    # And input is still validated for a token that may make the write.
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    prod = {"Authorization": f"Bearer {tokens['prod-writer']}"}
    for h in (admin, prod):
        for method, path, body in writes[:3] + writes[5:9]:
            kind = {"content": body} if isinstance(body, bytes) else {"json": body}
            answer = client.request(
                method, path, headers=h | {"Content-Type": "application/json"}, **kind
            )
            assert answer.status_code in {400, 422}, (method, path, answer.text)  # 400: not JSON
    assert (
        client.put(f"{C}/key/k?environment=moon", json={"value": 1}, headers=admin).status_code
        == 422
    )


def test_a_list_without_an_environment_covers_the_ones_the_token_may_read(
    secured: tuple[TestClient, dict[str, str]],
) -> None:
    client, tokens = secured
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    for environment in ("production", "staging", "development"):
        body = {"config_key": "k", "config_value": 1, "environment": environment}
        assert client.post(f"{C}/", json=body, headers=admin).status_code == 201
        flag = {"flag_key": "f", "environment": environment}
        assert client.post(f"{F}/", json=flag, headers=admin).status_code == 201
    staging = {"Authorization": f"Bearer {tokens['staging-reader']}"}
    for path in (f"{C}/", f"{F}/"):
        listed = client.get(path, headers=staging).json()
        assert {item["environment"] for item in listed["items"]} == {"staging"}, path
        assert listed["total"] == 1
        everything = client.get(path, headers={"Authorization": f"Bearer {tokens['reader']}"})
        assert everything.json()["total"] == 3
        refused = client.get(path, params={"environment": "production"}, headers=staging)
        assert refused.status_code == 403


def test_health_and_metrics_stay_open(secured: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = secured
    for path in ("/health", "/health/live", "/health/ready", "/status", "/metrics", "/docs"):
        assert client.get(path).status_code == 200, path


def test_the_actor_is_the_tokens_name_never_a_header(
    secured: tuple[TestClient, dict[str, str]],
) -> None:
    client, tokens = secured
    h = {"Authorization": f"Bearer {tokens['prod-writer']}", "X-Aurora-Actor": "mallory"}
    created = client.post(f"{C}/", json={"config_key": "a", "config_value": 1}, headers=h).json()
    assert (created["created_by"], created["updated_by"]) == ("prod-writer", "prod-writer")
    reader = {"Authorization": f"Bearer {tokens['reader']}"}
    history = client.get(f"{C}/{created['id']}/history", headers=reader).json()
    assert history[0]["actor"] == "prod-writer"


def test_a_revoked_token_is_refused_at_once(secured: tuple[TestClient, dict[str, str]]) -> None:
    client, tokens = secured
    reader = {"Authorization": f"Bearer {tokens['reader']}"}
    assert client.get(f"{F}/", headers=reader).status_code == 200  # cached now
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    revoked = client.delete("/api/v1/tokens/reader", headers=admin)
    assert (revoked.status_code, revoked.json()["revoked_at"] is not None) == (200, True)
    assert client.get(f"{F}/", headers=reader).status_code == 401
    listed = {t["name"]: t for t in client.get("/api/v1/tokens/", headers=admin).json()}
    assert listed["reader"]["revoked_at"] is not None
    assert "token" not in listed["reader"]


def test_only_the_hash_is_stored(secured: tuple[TestClient, dict[str, str]]) -> None:
    client, tokens = secured
    engine = client.app.state.store.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT name, token_hash, scopes FROM api_tokens")).all()
    stored = " ".join(str(value) for row in rows for value in row)
    for secret in tokens.values():
        assert secret not in stored


def test_token_requests_are_validated(secured: tuple[TestClient, dict[str, str]]) -> None:
    client, tokens = secured
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    for body in (
        {"name": "bad", "scopes": ["write:moon"]},
        {"name": "bad", "scopes": ["superuser"]},
        {"name": "bad", "scopes": []},
        {"name": "bad name", "scopes": ["read"]},
        {"name": "x" * 101, "scopes": ["read"]},
        # The service's own actors: a token named so would be indistinguishable in history.
        {"name": "bootstrap-admin", "scopes": ["read"]},
        {"name": "anonymous", "scopes": ["read"]},
        {"name": "cli", "scopes": ["read"]},
    ):
        assert client.post("/api/v1/tokens/", json=body, headers=admin).status_code == 422, body
    names = [t["name"] for t in client.get("/api/v1/tokens/", headers=admin).json()]
    assert sorted(names) == ["prod-writer", "reader", "staging-reader", "staging-writer"]
    again = client.post(
        "/api/v1/tokens/", json={"name": "reader", "scopes": ["read"]}, headers=admin
    )
    assert again.status_code == 409


def test_the_cli_creates_the_first_token(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/cli.db"
    env = {**os.environ, "DATABASE_URL": url, "AURORA_LOG_FORMAT": "text"}
    made = subprocess.run(
        [sys.executable, "-m", "service", "tokens", "create", "ci", "--scope", "admin"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    secret = made.stdout.strip()
    assert secret.startswith("aur_")
    assert secret not in made.stderr  # the log line does not repeat it
    listed = subprocess.run(
        [sys.executable, "-m", "service", "tokens", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert listed.stdout.startswith("ci\tadmin\tactive")
    settings = make_settings(url, auth="enabled")
    with TestClient(create_app(settings)) as client:
        ok = client.get(f"{F}/", headers={"Authorization": f"Bearer {secret}"})
        assert ok.status_code == 200
    bad = subprocess.run(
        [sys.executable, "-m", "service", "tokens", "create", "x", "--scope", "root"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 1
    assert "unknown scope" in bad.stderr
    for name, why in (
        ("bad name", "a token name is"),
        ("x" * 101, "a token name is"),
        ("bootstrap-admin", "reserved"),
    ):
        refused = subprocess.run(
            [sys.executable, "-m", "service", "tokens", "create", name, "--scope", "admin"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (refused.returncode, refused.stdout) == (1, ""), name
        assert why in refused.stderr, name


def test_auth_defaults() -> None:
    def settings(**values: Any) -> Settings:
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    assert settings(database_url="sqlite:///x.db").auth_enabled is False  # make run: open, loudly
    assert settings(database_url="mysql+pymysql://db/aurora").auth_enabled is True
    assert settings(database_url="mysql+pymysql://db/aurora", auth="disabled").auth_enabled is False
    assert settings(database_url="sqlite:///x.db", auth="enabled").auth_enabled is True


ORIGIN = "https://console.example"


def test_cors_is_closed_by_default(database_url: str) -> None:
    settings = make_settings(database_url, auth="enabled", admin_token=ADMIN_SECRET)
    with TestClient(create_app(settings)) as client:
        h = {"Authorization": f"Bearer {ADMIN_SECRET}", "Origin": ORIGIN}
        answer = client.get(f"{C}/", headers=h)
        assert answer.status_code == 200
        assert "access-control-allow-origin" not in answer.headers
        preflight = client.options(
            f"{C}/", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "PUT"}
        )
        assert "access-control-allow-origin" not in preflight.headers


def test_a_configured_origin_gets_cors_headers_on_every_kind_of_answer(database_url: str) -> None:
    """Preflights carry no token, so CORS answers them before authentication; the fast path's
    answers and refusals carry the headers as the routes' do."""
    settings = make_settings(
        database_url, auth="enabled", admin_token=ADMIN_SECRET, cors_origins=(ORIGIN,)
    )
    with TestClient(create_app(settings)) as client:
        seed(client, ADMIN_SECRET)
        h = {"Authorization": f"Bearer {ADMIN_SECRET}", "Origin": ORIGIN}
        preflight = client.options(
            f"{F}/rollout/f",
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "PUT",
                "Access-Control-Request-Headers": "authorization,if-match",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == ORIGIN
        for path in (f"{C}/", f"{F}/check/f?user_id=1", f"{C}/value/k"):  # route, fast paths
            answer = client.get(path, headers=h)
            assert answer.status_code == 200, path
            assert answer.headers["access-control-allow-origin"] == ORIGIN, path
        refused = client.get(f"{F}/check/f", headers={"Origin": ORIGIN})
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == ORIGIN
        other = client.get(f"{C}/", headers=h | {"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
