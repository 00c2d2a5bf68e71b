"""A flag's rules, variants and prerequisites through the native write API (issue 10), on SQLite
and MariaDB: versioned, audited, If-Match-guarded, validated with JSON Pointers, within limits;
and flag keys beyond ASCII end to end."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from aurora_client.evaluation import bucket_of
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings

API = "/api/v1/feature-flags"
SEGMENTS = "/api/v1/segments"
IN_DE = {"context_name": "country", "operator": "IN", "values": ["DE"]}
BETA = {"context_name": "userId", "operator": "STR_STARTS_WITH", "values": ["beta-"]}


def create(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post(f"{API}/", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def put(client: TestClient, field: str, key: str, items: Any, **headers: str) -> Any:
    return client.put(f"{API}/{field}/{quote(key, safe='/')}", json={field: items}, headers=headers)


def refused(response: Any, status: int = 422) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    return body


def invalid_targeting(response: Any) -> list[dict[str, Any]]:
    body = refused(response)
    assert body["type"] == "urn:aurora-config:problem:invalid-targeting", body
    errors: list[dict[str, Any]] = body["errors"]
    for error in errors:  # every problem is in the detail too, by its pointer
        assert error["pointer"] in body["detail"] or len(errors) > 5
    return errors


def pointers(response: Any) -> list[str]:
    return [e["pointer"] for e in invalid_targeting(response)]


def test_a_flag_without_targeting_shows_empty_lists_and_keeps_its_cohort(
    client: TestClient,
) -> None:
    flag = create(client, flag_key="plain", is_enabled=True, rollout_percentage=30)
    assert (flag["rules"], flag["variants"], flag["prerequisites"]) == ([], [], [])
    shown = client.get(f"{API}/key/plain").json()
    assert (shown["rules"], shown["variants"], shown["prerequisites"]) == ([], [], [])
    for user in map(str, range(50)):
        answer = client.get(f"{API}/check/plain", params={"user_id": user}).json()
        assert answer == {"enabled": bucket_of("plain", user) <= 30}


def test_rules_are_replaced_as_a_whole_versioned_audited_and_if_match_guarded(
    client: TestClient,
) -> None:
    create(client, flag_key="checkout", is_enabled=True)
    rules = [
        {"constraints": [IN_DE]},
        {"id": "beta", "constraints": [BETA], "rollout": {"percentage": 50}},
    ]
    stale = put(client, "rules", "checkout", rules, **{"If-Match": '"7"'})
    assert refused(stale, 412)["type"] == "urn:aurora-config:problem:version-mismatch"
    written = put(client, "rules", "checkout", rules, **{"If-Match": '"1"'})
    assert written.status_code == 200, written.text
    assert written.headers["etag"] == '"2"'
    flag = written.json()
    assert flag["version"] == 2
    first, second = flag["rules"]
    assert first == {  # defaults filled, an id assigned
        "id": "r1",
        "constraints": [IN_DE | {"value": None, "inverted": False, "case_insensitive": False}],
        "segments": [],
        "rollout": {"percentage": 100, "stickiness": "default", "group_id": "checkout"},
        "variants": [],
    }
    assert (second["id"], second["rollout"]["percentage"]) == ("beta", 50)
    assert client.get(f"{API}/key/checkout").json()["rules"] == flag["rules"]
    # The same list again changes nothing: no new version, no history.
    again = put(client, "rules", "checkout", flag["rules"], **{"If-Match": '"2"'})
    assert (again.status_code, again.json()["version"]) == (200, 2)
    history = client.get(f"{API}/{flag['id']}/history").json()
    assert [(h["version"], h["action"]) for h in history] == [(2, "update"), (1, "create")]
    assert history[0]["old_state"]["rules"] == []
    assert history[0]["new_state"]["rules"] == flag["rules"]
    cleared = put(client, "rules", "checkout", [], **{"If-Match": '"2"'})
    assert (cleared.json()["rules"], cleared.json()["version"]) == ([], 3)


def test_variants_and_prerequisites_are_replaced_and_validated(client: TestClient) -> None:
    create(client, flag_key="parent", is_enabled=True)
    create(client, flag_key="child")
    variants = [
        {"name": "blue", "payload": {"type": "string", "value": "#00f"}},
        {"name": "red", "weight": 200, "weight_type": "fix"},
    ]
    written = put(client, "variants", "child", variants)
    assert written.status_code == 200, written.text
    assert [(v["name"], v["weight"]) for v in written.json()["variants"]] == [
        ("blue", 800),  # the variable weights share what the fixed ones leave of 1000
        ("red", 200),
    ]
    prerequisite = {"flag_key": "parent", "enabled": True, "variants": []}
    linked = put(client, "prerequisites", "child", [prerequisite])
    assert (linked.status_code, linked.json()["prerequisites"]) == (200, [prerequisite])
    assert linked.json()["version"] == 3
    # A missing parent, and a parent that would then depend on its child (a cycle).
    missing = put(client, "prerequisites", "child", [{"flag_key": "nope"}])
    assert pointers(missing) == ["/prerequisites/0/flag_key"]
    back = invalid_targeting(put(client, "prerequisites", "parent", [{"flag_key": "child"}]))
    assert back
    assert all(e["pointer"].startswith("/prerequisites") for e in back)
    duplicate = put(client, "variants", "child", [{"name": "a"}, {"name": "a"}])
    assert pointers(duplicate)[0].startswith("/variants/1")
    assert client.get(f"{API}/key/child").json()["version"] == 3  # nothing refused was written


def test_create_and_update_take_targeting_too(client: TestClient) -> None:
    flag = create(
        client,
        flag_key="full",
        is_enabled=True,
        rules=[{"id": "de", "constraints": [IN_DE], "variants": [{"name": "x"}]}],
        variants=[{"name": "y"}],
    )
    assert [r["id"] for r in flag["rules"]] == ["de"]
    assert flag["rules"][0]["variants"][0]["weight"] == 1000
    assert flag["variants"][0]["weight"] == 1000
    updated = client.put(
        f"{API}/{flag['id']}", json={"rules": [{"constraints": [BETA]}], "is_enabled": False}
    )
    assert updated.status_code == 200, updated.text
    body = updated.json()
    assert ([r["id"] for r in body["rules"]], body["is_enabled"], body["version"]) == (
        ["r1"],
        False,
        2,
    )
    assert body["variants"] == flag["variants"]  # not sent: unchanged
    bad = client.put(f"{API}/{flag['id']}", json={"rules": [{"constraints": [BAD_REGEX]}]})
    assert pointers(bad) == ["/rules/0/constraints/0/value"]
    bad_create = client.post(
        f"{API}/", json={"flag_key": "nope", "prerequisites": [{"flag_key": "ghost"}]}
    )
    assert pointers(bad_create) == ["/prerequisites/0/flag_key"]
    assert client.get(f"{API}/key/nope").status_code == 404


BAD_REGEX = {"context_name": "userId", "operator": "REGEX", "value": "(a"}


@pytest.mark.parametrize(
    ("constraint", "pointer"),
    [
        ({"context_name": "userId", "operator": "NOPE", "values": ["1"]}, "operator"),
        (BAD_REGEX, "value"),
        ({"context_name": "version", "operator": "SEMVER_GT", "value": "1.x"}, "value"),
        ({"context_name": "remoteAddress", "operator": "IN_CIDR", "values": ["10.0.0/8"]}, ""),
        ({"context_name": "age", "operator": "NUM_GT", "value": "old"}, "value"),
        ({"context_name": "currentTime", "operator": "DATE_AFTER", "value": "soon"}, "value"),
    ],
)
def test_a_constraint_that_could_never_work_is_a_422_naming_rule_and_constraint(
    client: TestClient, constraint: dict[str, Any], pointer: str
) -> None:
    create(client, flag_key="f")
    rules = [{"constraints": [IN_DE]}, {"constraints": [IN_DE, BETA, constraint]}]
    found = pointers(put(client, "rules", "f", rules))
    assert len(found) == 1
    assert found[0].startswith("/rules/1/constraints/2")
    assert found[0].endswith(pointer)
    assert client.get(f"{API}/key/f").json()["rules"] == []


def test_shapes_are_refused_by_the_schema(client: TestClient) -> None:
    create(client, flag_key="f")
    for rules in (
        [{"constraints": [IN_DE | {"bogus": 1}]}],
        [{"constraints": [IN_DE | {"values": [1]}]}],  # strict: values are strings
        [{"rollout": {"percentage": 101}}],
        [{"id": "no spaces"}],
        {"not": "a list"},
    ):
        body = refused(put(client, "rules", "f", rules))
        assert body["type"] == "urn:aurora-config:problem:invalid-input", body
        assert body["errors"][0]["location"].startswith("rules")
    refused(client.put(f"{API}/rules/f", json={"rules": [], "extra": 1}))
    refused(client.put(f"{API}/variants/f", json={"rules": []}))


def test_a_rule_naming_a_segment_that_does_not_exist_is_a_422(client: TestClient) -> None:
    create(client, flag_key="f")
    made = client.post(f"{SEGMENTS}/", json={"name": "beta", "constraints": [BETA]})
    assert made.status_code == 201, made.text
    rules = [{"segments": ["beta"]}, {"segments": ["beta", "gamma"]}]
    assert pointers(put(client, "rules", "f", rules)) == ["/rules/1/segments/1"]
    staging = client.post(f"{SEGMENTS}/", json={"name": "gamma", "environment": "staging"})
    assert staging.status_code == 201  # another environment's segment is not this one's
    assert pointers(put(client, "rules", "f", rules)) == ["/rules/1/segments/1"]
    written = put(client, "rules", "f", rules[:1])
    assert (written.status_code, written.json()["rules"][0]["segments"]) == (200, ["beta"])


def test_unknown_flag_is_404_and_unknown_environment_422(client: TestClient) -> None:
    assert refused(put(client, "rules", "ghost", []), 404)["type"].endswith("not-found")
    moon = client.put(f"{API}/rules/f?environment=moon", json={"rules": []})
    assert refused(moon)["type"].endswith("invalid-input")


@pytest.fixture
def limited(settings: Settings) -> Iterator[TestClient]:
    tight = settings.model_copy(
        update={
            "max_rules_per_flag": 2,
            "max_constraints_per_rule": 2,
            "max_values_per_constraint": 3,
        }
    )
    with TestClient(create_app(tight)) as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("rules", "limit"),
    [
        ([{}, {}, {}], "AURORA_MAX_RULES_PER_FLAG"),
        ([{"constraints": [IN_DE, IN_DE, IN_DE]}], "AURORA_MAX_CONSTRAINTS_PER_RULE"),
        (
            [{"constraints": [IN_DE | {"values": ["1", "2", "3", "4"]}]}],
            "AURORA_MAX_VALUES_PER_CONSTRAINT",
        ),
    ],
)
def test_limits_are_422_naming_the_setting(
    limited: TestClient, rules: list[Any], limit: str
) -> None:
    create(limited, flag_key="f")
    errors = invalid_targeting(put(limited, "rules", "f", rules))
    assert [e.get("limit") for e in errors] == [limit]
    assert limit in limited.put(f"{API}/rules/f", json={"rules": rules}).json()["detail"]
    at_the_limit = [{"constraints": [IN_DE | {"values": ["1", "2", "3"]}, IN_DE]}, {}]
    assert put(limited, "rules", "f", at_the_limit).status_code == 200


@pytest.mark.parametrize("key", ["Hellø_Wørld", "🚀", "emoji/👨‍👩‍👧 with spaces", "100% ?#&"])
def test_unicode_flag_keys_end_to_end(client: TestClient, key: str) -> None:
    flag = create(client, flag_key=key, rollout_percentage=100)
    assert flag["flag_key"] == key
    path = quote(key, safe="/")
    assert client.get(f"{API}/key/{path}").json()["id"] == flag["id"]
    toggled = client.put(f"{API}/toggle/{path}", headers={"If-Match": '"1"'})
    assert (toggled.status_code, toggled.json()["is_enabled"]) == (200, True)
    assert client.get(f"{API}/check/{path}", params={"user_id": "u"}).json() == {"enabled": True}
    written = put(client, "rules", key, [{"constraints": [IN_DE]}])
    assert written.status_code == 200, written.text
    history = client.get(f"{API}/{flag['id']}/history").json()
    assert [(h["key"], h["version"]) for h in history] == [(key, 3), (key, 2), (key, 1)]
    listed = client.get(f"{API}/", params={"key_prefix": key}).json()
    assert [f["flag_key"] for f in listed["items"]] == [key]


def test_keys_differing_only_in_case_or_emoji_are_different_flags(client: TestClient) -> None:
    """On MariaDB too (binary collation): neither a 409 nor one found for the other."""
    for key in ("Flag", "flag", "🎉", "🚀", "Hellø", "hello"):
        create(client, flag_key=key, flag_name=f"name of {key}")
    for key in ("Flag", "flag", "🎉", "🚀", "Hellø", "hello"):
        shown = client.get(f"{API}/key/{quote(key)}").json()
        assert (shown["flag_key"], shown["flag_name"]) == (key, f"name of {key}")


REFUSED_KEYS = (
    "a\u0000b",
    "tab\there",
    "del\u007f",
    "c1\u0085",
    "bidi\u202eevil",
    "line\u2028break",
    "a//b",
    "./x",
    "x/..",
    "x" * 201,
    "",
)


def test_flag_keys_with_controls_or_empty_segments_are_refused(client: TestClient) -> None:
    for key in REFUSED_KEYS:
        refused(client.post(f"{API}/", json={"flag_key": key}))
    lone = b'{"flag_key": "lone \\ud800"}'  # a lone surrogate: JSON can escape it, UTF-8 not
    refused(client.post(f"{API}/", content=lone, headers={"Content-Type": "application/json"}))
    assert client.get(f"{API}/").json()["total"] == 0
    refused(client.get(f"{API}/key/a%07b"))
    refused(client.put(f"{API}/rules/bidi%E2%80%AEevil", json={"rules": []}))
