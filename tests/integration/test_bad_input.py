"""Bad input gets a clear 4xx problem document and changes nothing (on SQLite and MariaDB)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

CONFIGS = "/api/v1/configurations"
FLAGS = "/api/v1/feature-flags"


def state(client: TestClient) -> Any:
    return (
        client.get(f"{CONFIGS}/", params={"limit": 1000}).json(),
        client.get(f"{FLAGS}/", params={"limit": 1000}).json(),
    )


@pytest.fixture
def seeded(client: TestClient) -> Iterator[TestClient]:
    client.post(f"{CONFIGS}/", json={"config_key": "k", "config_value": 1})
    client.post(f"{FLAGS}/", json={"flag_key": "f", "is_enabled": True, "rollout_percentage": 10})
    before = state(client)
    yield client
    assert state(client) == before, "a refused request changed data"


def assert_problem(response: Any, status: int, *needles: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["type"].startswith("urn:aurora-config:problem:")
    for needle in needles:
        assert needle in body["detail"], body


def test_malformed_json_is_400(seeded: TestClient) -> None:
    response = seeded.post(
        f"{CONFIGS}/", content=b'{"config_key": "x",', headers={"content-type": "application/json"}
    )
    assert_problem(response, 400, "not valid JSON")


def test_invalid_utf8_is_4xx(seeded: TestClient) -> None:
    response = seeded.post(
        f"{CONFIGS}/",
        content=b'{"config_key": "x", "config_value": "\xff\xfe"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code in {400, 422}
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"config_key": "x"}, "config_value: Field required"),
        ({"config_key": 5, "config_value": 1}, "config_key"),
        ({"config_key": "x", "config_value": 1, "service_name": 7}, "service_name"),
        ({"config_key": "x", "config_value": 1, "surprise": True}, "surprise"),
        ({"config_key": "x" * 201, "config_value": 1}, "1 to 200"),
        ({"config_key": "", "config_value": 1}, "1 to 200"),
        ({"config_key": "has space", "config_value": 1}, "letters, digits"),
        ({"config_key": "ünïcode", "config_value": 1}, "letters, digits"),
        ({"config_key": "../etc/passwd", "config_value": 1}, "'/../'"),
        ({"config_key": "a//b", "config_value": 1}, "'//'"),
        ({"config_key": "/abs", "config_value": 1}, "start or end"),
        ({"config_key": "x'; DROP TABLE app_configurations; --", "config_value": 1}, "letters"),
        ({"config_key": "x", "config_value": 1, "service_name": "a b"}, "service name"),
        ({"config_key": "x", "config_value": 1, "environment": "prod"}, "allowed: development"),
        ({"config_key": "x", "config_value": 1, "description": "d" * 1001}, "description"),
        ([1, 2], "object"),
    ],
)
def test_bad_configuration_bodies_are_422(seeded: TestClient, body: Any, needle: str) -> None:
    assert_problem(seeded.post(f"{CONFIGS}/", json=body), 422, needle)


def test_oversized_value_is_422_naming_the_limit(seeded: TestClient) -> None:
    big = "x" * (64 * 1024)
    response = seeded.post(f"{CONFIGS}/", json={"config_key": "big", "config_value": big})
    assert_problem(response, 422, "the limit is 65536")
    just_fits = "x" * (64 * 1024 - 2)  # the two quotes count
    ok = seeded.post(f"{CONFIGS}/", json={"config_key": "fits", "config_value": just_fits})
    assert ok.status_code == 201
    seeded.delete(f"{CONFIGS}/{ok.json()['id']}")
    seeded.delete(f"{CONFIGS}/{ok.json()['id']}")


def test_deeply_nested_value_is_refused(seeded: TestClient) -> None:
    deep: Any = 1
    for _ in range(40):
        deep = [deep]
    assert_problem(
        seeded.post(f"{CONFIGS}/", json={"config_key": "d", "config_value": deep}), 422, "deeper"
    )
    absurd = b'{"config_key": "d", "config_value": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = seeded.post(
        f"{CONFIGS}/", content=absurd, headers={"content-type": "application/json"}
    )
    assert response.status_code in {400, 422}


def test_nan_is_refused(seeded: TestClient) -> None:
    response = seeded.post(
        f"{CONFIGS}/",
        content=b'{"config_key": "n", "config_value": NaN}',
        headers={"content-type": "application/json"},
    )
    assert_problem(response, 422, "NaN")


def test_body_over_one_mebibyte_is_413(seeded: TestClient) -> None:
    body = b'{"config_key": "x", "config_value": "' + b"a" * (1024 * 1024) + b'"}'
    response = seeded.post(
        f"{CONFIGS}/", content=body, headers={"content-type": "application/json"}
    )
    assert_problem(response, 413, "1048576 bytes")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit still holds
        yield b'{"config_key": "x", "config_value": "'
        for _ in range(20):
            yield b"a" * 65536
        yield b'"}'

    chunked = seeded.post(
        f"{CONFIGS}/", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_problem(chunked, 413)


@pytest.mark.parametrize("percentage", ["-1", "101", "abc", "50.5", ""])
def test_rollout_out_of_range_is_422(seeded: TestClient, percentage: str) -> None:
    response = seeded.put(f"{FLAGS}/rollout/f", params={"percentage": percentage})
    assert_problem(response, 422, "percentage")


@pytest.mark.parametrize(
    "body",
    [
        {"flag_key": "g", "rollout_percentage": -5},
        {"flag_key": "g", "rollout_percentage": 101},
        {"flag_key": "g", "rollout_percentage": "50"},
        {"flag_key": "g", "is_enabled": "yes"},
        {"flag_key": "g", "is_enabled": 1},
        {"flag_key": "g", "environment": "moon"},
        {"flag_key": "bad//key"},
        {"flag_key": "bad\u0007key"},
        {"flag_key": "f"},  # exists: 409, below
    ],
)
def test_bad_flag_bodies(seeded: TestClient, body: dict[str, Any]) -> None:
    response = seeded.post(f"{FLAGS}/", json=body)
    assert_problem(response, 409 if body == {"flag_key": "f"} else 422)


@pytest.mark.parametrize(
    "path",
    [
        f"{CONFIGS}/value/k?environment=moon",
        f"{CONFIGS}/bulk?environment=moon",
        f"{FLAGS}/check/f?environment=moon",
        f"{FLAGS}/evaluate/f?user_id=",
        f"{CONFIGS}/value/k?service_name=bad%20name",
        f"{CONFIGS}/key/a%2F..%2Fb",
        f"{CONFIGS}/0",
        f"{CONFIGS}/99999999999999999999999",
        f"{CONFIGS}/?limit=0",
        f"{CONFIGS}/?limit=100000",
        f"{CONFIGS}/?offset=-1",
        f"{CONFIGS}/?offset=99999999999999999999999",
    ],
)
def test_bad_query_and_path_parameters_are_422(seeded: TestClient, path: str) -> None:
    response = seeded.get(path)
    assert_problem(response, 422)


def test_unknown_environment_names_the_allowed_ones(seeded: TestClient) -> None:
    response = seeded.get(f"{FLAGS}/check/f", params={"environment": "prod"})
    assert_problem(response, 422, "unknown environment 'prod'", "development, staging, production")


def test_unknown_route_and_method_are_problems(seeded: TestClient) -> None:
    assert_problem(seeded.get("/api/v1/nothing-here"), 404, "no route")
    for not_an_id in ("-1", "abc", "1.5"):  # ids are digits: anything else is no route at all
        assert_problem(seeded.get(f"{CONFIGS}/{not_an_id}"), 404, "no route")
    not_allowed = seeded.put(f"{CONFIGS}/bulk", json={})
    assert_problem(not_allowed, 405)
    assert not_allowed.headers["allow"] == "GET"
    listing = seeded.request("PATCH", f"{CONFIGS}/")
    assert listing.headers["allow"] == "GET, POST"  # every method of the path, not the first
    assert seeded.patch(f"{CONFIGS}/1").status_code == 405
    assert seeded.patch(f"{CONFIGS}/1").headers["content-type"] == "application/problem+json"


def test_missing_items_are_404_problems(seeded: TestClient) -> None:
    assert_problem(seeded.get(f"{CONFIGS}/424242"), 404, "424242")
    assert_problem(seeded.put(f"{CONFIGS}/424242", json={"config_value": 1}), 404)
    assert_problem(seeded.delete(f"{FLAGS}/424242"), 404)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", f"{FLAGS}/?environment=development", {"flag_key": "g"}),
        ("POST", f"{CONFIGS}/?service_name=billing", {"config_key": "n", "config_value": 1}),
        ("PUT", f"{CONFIGS}/key/k?env=development", {"value": 2}),
        ("PUT", f"{FLAGS}/rollout/f?percentage=50&enviroment=staging", None),
        ("DELETE", f"{FLAGS}/1?force=true", None),
    ],
)
def test_a_write_with_an_unknown_query_parameter_is_refused(
    seeded: TestClient, method: str, path: str, body: Any
) -> None:
    """A misplaced or misspelt scope parameter must not make a write land elsewhere."""
    unknown = path.rsplit("&", 1)[-1].rsplit("?", maxsplit=1)[-1].split("=", maxsplit=1)[0]
    answer = seeded.request(method, path, json=body)
    assert_problem(answer, 422, f"unknown query parameter '{unknown}'")


def test_reads_ignore_query_parameters_they_do_not_take(seeded: TestClient) -> None:
    assert seeded.get(f"{CONFIGS}/value/k", params={"_": "cache-buster"}).status_code == 200


def test_collections_answer_without_their_trailing_slash(client: TestClient) -> None:
    """No 307: behind a TLS proxy it points at http://, and clients drop a POST body on it."""
    created = client.post(FLAGS, json={"flag_key": "g"}, follow_redirects=False)
    assert created.status_code == 201
    listed = client.get(FLAGS, follow_redirects=False)
    assert (listed.status_code, listed.json()["total"]) == (200, 1)
    config = client.post(CONFIGS, json={"config_key": "n", "config_value": 1})
    assert config.status_code == 201
    assert client.get("/api/v1/tokens", follow_redirects=False).status_code == 200
    metrics = client.get("/metrics").text
    assert 'route="/api/v1/feature-flags/"' in metrics
