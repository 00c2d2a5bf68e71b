"""Input rules: keys, service names, values, If-Match, settings."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from service.errors import InvalidInput, VersionMismatch
from service.etag import IfMatch, check_if_match, format_etag
from service.schemas import check_key, check_service, check_text, check_value
from service.settings import Settings


@pytest.mark.parametrize(
    "key", ["a", "database.max_connections", "db/primary:host", "A-Z_0.9", "x" * 200, "a/b/c"]
)
def test_good_keys(key: str) -> None:
    assert check_key(key) == key


@pytest.mark.parametrize(
    "key",
    [
        "",
        "x" * 201,
        "a b",
        "a\nb",
        "é",
        "../x",
        "a/../b",
        "a/./b",
        "./a",
        "/a",
        "a/",
        "a//b",
        "..",
        "a;b",
        "a'b",
        "a%2Fb",
    ],
)
def test_bad_keys(key: str) -> None:
    with pytest.raises(ValueError):
        check_key(key)


@pytest.mark.parametrize("name", ["user-service", "svc_1", "a.b"])
def test_good_service_names(name: str) -> None:
    assert check_service(name) == name


@pytest.mark.parametrize("name", ["", "a/b", "a b", "x" * 101, "a:b"])
def test_bad_service_names(name: str) -> None:
    with pytest.raises(ValueError):
        check_service(name)


def test_text_rejects_lone_surrogates() -> None:
    assert check_text("ok ✓") == "ok ✓"
    with pytest.raises(ValueError):
        check_text("\ud800")


def test_value_limits() -> None:
    assert check_value({"a": [1, 2.5, None, True, "s"]}, 100) == {"a": [1, 2.5, None, True, "s"]}
    with pytest.raises(ValueError, match="limit is 10"):
        check_value("x" * 20, 10)
    with pytest.raises(ValueError, match="NaN"):
        check_value([1, math.nan], 100)
    with pytest.raises(ValueError, match="NaN"):
        check_value({"a": math.inf}, 100)
    with pytest.raises(ValueError, match="not valid JSON"):
        check_value("\ud800", 100)
    deep: object = 1
    for _ in range(32):
        deep = [deep]
    with pytest.raises(ValueError, match="deeper"):
        check_value(deep, 10_000)


def test_if_match() -> None:
    assert format_etag(3) == '"3"'
    assert IfMatch.parse(None) is None
    assert IfMatch.parse('"3"').versions == frozenset({3})  # type: ignore[union-attr]
    assert IfMatch.parse('W/"3", "4"').versions == frozenset({3, 4})  # type: ignore[union-attr]
    assert IfMatch.parse("*").versions is None  # type: ignore[union-attr]
    assert IfMatch.parse("3").versions == frozenset({3})  # type: ignore[union-attr]
    for bad in ("abc", '"-1"', '""', '"99999999999"', '"3', "null"):
        with pytest.raises(InvalidInput):
            IfMatch.parse(bad)
    check_if_match(None, 1)
    check_if_match(IfMatch.parse("*"), 7)
    check_if_match(IfMatch.parse('"7"'), 7)
    with pytest.raises(VersionMismatch):
        check_if_match(IfMatch.parse('"6"'), 7)
    with pytest.raises(VersionMismatch):
        check_if_match(IfMatch.parse("*"), None)


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql+pymysql://u@db/aurora")
    monkeypatch.setenv("PORT", "9000")
    monkeypatch.setenv("AURORA_ENVIRONMENTS", "dev, qa ,prod")
    monkeypatch.setenv("AURORA_DEFAULT_ENVIRONMENT", "qa")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.database_url == "mysql+pymysql://u@db/aurora"
    assert settings.database_backend == "mysql"
    assert settings.port == 9000
    assert settings.environments == ("dev", "qa", "prod")
    assert settings.default_environment == "qa"


def test_settings_refuse_a_default_environment_outside_the_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AURORA_ENVIRONMENTS", "dev,qa")
    with pytest.raises(ValidationError, match="AURORA_DEFAULT_ENVIRONMENT"):
        Settings(_env_file=None)  # type: ignore[call-arg]
