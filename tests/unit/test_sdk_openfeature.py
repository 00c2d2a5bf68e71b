"""The OpenFeature provider on a bootstrapped client (no server): lookups by type, targeted flags'
variants and payloads, and the evaluation context's mapping (issue 10)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from aurora_client import AuroraClient, Result, Status, Variant
from aurora_client.openfeature import AuroraProvider, to_context
from aurora_client.targeting import Reason as TargetingReason
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason


def config(key: str, value: Any) -> dict[str, Any]:
    return {
        "config_key": key,
        "config_value": value,
        "environment": "production",
        "service_name": None,
        "version": 1,
    }


FLAG = {
    "flag_key": "beta",
    "environment": "production",
    "is_enabled": True,
    "rollout_percentage": 100,
    "version": 1,
}
BOOT = {
    "configs": [config("maintenance", True), config("limit", 10), config("beta", "shadowed")],
    "flags": [FLAG],
}


@pytest.fixture
def provider() -> AuroraProvider:
    return AuroraProvider(AuroraClient("http://127.0.0.1:9", bootstrap=BOOT))


def test_a_boolean_configuration_value_resolves_as_a_boolean(provider: AuroraProvider) -> None:
    details = provider.resolve_boolean_details("maintenance", False)
    assert (details.value, details.error_code, details.reason) == (True, None, Reason.STALE)


def test_a_flag_wins_over_a_configuration_of_the_same_key(provider: AuroraProvider) -> None:
    details = provider.resolve_boolean_details("beta", False, EvaluationContext("u1"))
    assert (details.value, details.variant) == (True, "on")


@pytest.mark.parametrize(
    ("resolve", "key", "default"),
    [
        ("resolve_string_details", "nope-but-flag", "x"),
        ("resolve_integer_details", "nope-but-flag", 0),
        ("resolve_float_details", "nope-but-flag", 0.0),
        ("resolve_object_details", "nope-but-flag", {}),
        ("resolve_boolean_details", "limit", False),  # a number, not a boolean
    ],
)
def test_the_wrong_type_is_a_type_mismatch_not_a_missing_flag(
    resolve: str, key: str, default: Any
) -> None:
    flag = {**FLAG, "flag_key": "nope-but-flag"}
    client = AuroraClient("http://127.0.0.1:9", bootstrap={**BOOT, "flags": [flag]})
    details = getattr(AuroraProvider(client), resolve)(key, default)
    assert (details.value, details.error_code) == (default, ErrorCode.TYPE_MISMATCH)


def test_a_key_that_is_nothing_is_not_found(provider: AuroraProvider) -> None:
    for resolve in (provider.resolve_boolean_details, provider.resolve_string_details):
        assert resolve("missing", None).error_code is ErrorCode.FLAG_NOT_FOUND  # type: ignore[arg-type]


def test_a_refused_token_still_serves_the_bootstrap_as_stale() -> None:
    client = AuroraClient("http://127.0.0.1:9", bootstrap=BOOT)
    client._token_refused = True  # what a 401 leaves behind
    assert client.status is Status.ERROR
    details = AuroraProvider(client).resolve_integer_details("limit", 0)
    assert (details.value, details.reason, details.error_code) == (10, Reason.STALE, None)
    assert (
        AuroraProvider(AuroraClient("http://127.0.0.1:9"))
        .resolve_integer_details("limit", 0)
        .error_code
        is ErrorCode.PROVIDER_NOT_READY
    )


def test_a_refused_token_with_a_bootstrap_still_starts_the_provider() -> None:
    """set_provider_and_wait re-raises what initialize raises: a service booting with its
    bootstrap while its token is refused must start, serving the bootstrap as STALE."""
    from openfeature import api  # noqa: PLC0415
    from openfeature.exception import ProviderNotReadyError  # noqa: PLC0415

    client = AuroraClient("http://127.0.0.1:9", bootstrap=BOOT)
    client._token_refused = True  # what a 401 leaves behind
    AuroraProvider(client, ready_timeout=0.01).initialize(EvaluationContext())
    api.set_provider_and_wait(AuroraProvider(client, ready_timeout=0.01))
    assert api.get_client().get_integer_details("limit", 0).value == 10
    with pytest.raises(ProviderNotReadyError):  # nothing to serve: refused
        AuroraProvider(AuroraClient("http://127.0.0.1:9"), ready_timeout=0.01).initialize(
            EvaluationContext()
        )
    api.clear_providers()


# -- targeted flags (issue 10) ---------------------------------------------------------------

EVERYONE = {
    "id": "everyone",
    "constraints": [],
    "segments": [],
    "rollout": {"percentage": 100, "stickiness": "default", "group_id": None},
    "variants": [],
}


def with_variants(key: str, *payloads: tuple[str, str], enabled: bool = True) -> dict[str, Any]:
    """A flag on for everyone whose variants carry these payloads: user n+1 gets the n-th."""
    variants = [
        {
            "name": f"v{n + 1}",
            "weight": 1000 // len(payloads),
            "weight_type": "variable",
            "stickiness": "default",
            "payload": {"type": kind, "value": value},
            "overrides": [{"context_name": "userId", "values": [str(n + 1)]}],
        }
        for n, (kind, value) in enumerate(payloads)
    ]
    return {
        **FLAG,
        "flag_key": key,
        "is_enabled": enabled,
        "rules": [EVERYONE],
        "variants": variants,
        "prerequisites": [],
    }


BETA_USERS = {
    **FLAG,
    "flag_key": "beta-users",
    "rules": [
        {
            **EVERYONE,
            "id": "listed",
            "constraints": [
                {
                    "context_name": "userId",
                    "operator": "IN",
                    "values": ["7"],
                    "value": None,
                    "inverted": False,
                    "case_insensitive": False,
                }
            ],
        }
    ],
    "variants": [],
    "prerequisites": [],
}
TARGETED = {
    "configs": [config("color", "red"), config("beta", "shadowed")],
    "flags": [
        FLAG,  # "beta": a flag as before targeting
        BETA_USERS,
        with_variants("color", ("string", "#00f"), ("csv", "a, b,c")),
        with_variants("limit", ("number", "42"), ("number", "2.5"), ("number", "forty")),
        with_variants("layout", ("json", '{"columns": 3}'), ("json", "3"), ("json", "{")),
        with_variants("off", ("string", "x"), enabled=False),
    ],
}


def live(client: AuroraClient) -> AuroraClient:
    """As if the stream had just confirmed the copy."""
    client._live = True
    client._last_contact = time.monotonic()
    assert client.status is Status.READY
    return client


@pytest.fixture
def targeting() -> AuroraProvider:
    return AuroraProvider(live(AuroraClient("http://127.0.0.1:9", bootstrap=TARGETED)))


def user(n: int, **attributes: Any) -> EvaluationContext:
    return EvaluationContext(str(n), attributes)


def test_a_targeted_flag_resolves_its_rules_for_the_context(targeting: AuroraProvider) -> None:
    matched = targeting.resolve_boolean_details("beta-users", False, user(7))
    assert (matched.value, matched.reason) == (True, Reason.TARGETING_MATCH)
    assert matched.flag_metadata["rule_id"] == "listed"
    assert matched.flag_metadata["rule_index"] == 0
    other = targeting.resolve_boolean_details("beta-users", True, user(8))
    assert (other.value, other.reason, other.error_code) == (False, Reason.DEFAULT, None)
    assert other.variant == "disabled"


def test_a_stale_client_answers_stale_for_a_targeted_flag() -> None:
    provider = AuroraProvider(AuroraClient("http://127.0.0.1:9", bootstrap=TARGETED))
    details = provider.resolve_boolean_details("beta-users", False, user(7))
    assert (details.value, details.reason) == (True, Reason.STALE)
    details = provider.resolve_string_details("color", "", user(1))
    assert (details.value, details.variant, details.reason) == ("#00f", "v1", Reason.STALE)


PAYLOADS = {
    "a string": ("resolve_string_details", "color", 1, "", "#00f"),
    "csv as a string": ("resolve_string_details", "color", 2, "", "a, b,c"),
    "csv as a list": ("resolve_object_details", "color", 2, {}, ["a", "b", "c"]),
    "an integer": ("resolve_integer_details", "limit", 1, 0, 42),
    "a float": ("resolve_float_details", "limit", 2, 0.0, 2.5),
    "an integer as a float": ("resolve_float_details", "limit", 1, 0.0, 42.0),
    "json": ("resolve_object_details", "layout", 1, {}, {"columns": 3}),
}


@pytest.mark.parametrize(
    ("resolve", "key", "who", "default", "expected"), PAYLOADS.values(), ids=PAYLOADS.keys()
)
def test_a_variant_payload_resolves_as_its_type(
    targeting: AuroraProvider, resolve: str, key: str, who: int, default: Any, expected: Any
) -> None:
    details = getattr(targeting, resolve)(key, default, user(who))
    assert (details.value, details.variant, details.error_code) == (expected, f"v{who}", None)
    assert type(details.value) is type(expected)
    assert details.reason in {Reason.TARGETING_MATCH, Reason.SPLIT}
    assert details.flag_metadata["feature_enabled"] is True


MISMATCHES = {
    "a number as a string": ("resolve_string_details", "limit", 1, "d", ErrorCode.TYPE_MISMATCH),
    "a string as a number": ("resolve_integer_details", "color", 1, 0, ErrorCode.TYPE_MISMATCH),
    "a string as an object": ("resolve_object_details", "color", 1, {}, ErrorCode.TYPE_MISMATCH),
    "a json number as an object": (
        "resolve_object_details",
        "layout",
        2,
        {},
        ErrorCode.TYPE_MISMATCH,
    ),
    "json as a string": ("resolve_string_details", "layout", 1, "d", ErrorCode.TYPE_MISMATCH),
    "a float as an integer": ("resolve_integer_details", "limit", 2, 0, ErrorCode.PARSE_ERROR),
    "not a number": ("resolve_float_details", "limit", 3, 0.0, ErrorCode.PARSE_ERROR),
    "broken json": ("resolve_object_details", "layout", 3, {}, ErrorCode.PARSE_ERROR),
}


@pytest.mark.parametrize(
    ("resolve", "key", "who", "default", "code"), MISMATCHES.values(), ids=MISMATCHES.keys()
)
def test_a_payload_of_another_type_is_an_error_with_the_default(
    targeting: AuroraProvider, resolve: str, key: str, who: int, default: Any, code: ErrorCode
) -> None:
    details = getattr(targeting, resolve)(key, default, user(who))
    assert (details.value, details.reason, details.error_code) == (default, Reason.ERROR, code)
    assert key in (details.error_message or "")


def test_a_disabled_flag_answers_the_default_value(targeting: AuroraProvider) -> None:
    details = targeting.resolve_string_details("off", "fallback", user(1))
    assert (details.value, details.variant, details.reason) == ("fallback", "disabled", "DISABLED")
    assert details.error_code is None
    assert details.flag_metadata["feature_enabled"] is False
    assert targeting.resolve_boolean_details("off", True, user(1)).value is False


def test_a_flag_with_variants_wins_over_a_configuration_of_its_key(
    targeting: AuroraProvider,
) -> None:
    assert targeting.resolve_string_details("color", "", user(1)).value == "#00f"
    # A flag without variants has no string: the configuration of its key is served, as before.
    shadowed = targeting.resolve_string_details("beta", "", user(1))
    assert (shadowed.value, shadowed.reason) == ("shadowed", Reason.STATIC)
    assert targeting.resolve_integer_details("beta-users", 0, user(7)).error_code is (
        ErrorCode.TYPE_MISMATCH
    )


def test_a_flag_as_before_targeting_resolves_as_before(targeting: AuroraProvider) -> None:
    details = targeting.resolve_boolean_details("beta", False, user(1, country="DE"))
    assert (details.value, details.variant, details.reason) == (True, "on", Reason.STATIC)
    assert details.flag_metadata == {"aurora_reason": "FULL_ROLLOUT", "bucket": 58}


def test_a_failed_evaluation_is_an_error_with_the_default(
    targeting: AuroraProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    failed = Result(
        enabled=False,
        variant=Variant(name="disabled", payload=None, enabled=False, feature_enabled=False),
        reason=TargetingReason.ERROR,
        rule_index=None,
        rule_id=None,
        error_code="CONTEXT_TOO_LARGE",
    )
    monkeypatch.setattr(targeting.client, "details", lambda key, context: failed)
    for resolve, default in [
        (targeting.resolve_boolean_details, True),
        (targeting.resolve_string_details, "d"),
    ]:
        details = resolve("color", default, user(1))  # type: ignore[operator]
        assert (details.value, details.reason) == (default, Reason.ERROR)
        assert details.error_code is ErrorCode.GENERAL
        assert "CONTEXT_TOO_LARGE" in (details.error_message or "")


def test_the_evaluation_context_maps_onto_aurora_context() -> None:
    when = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    context = to_context(
        EvaluationContext(
            "u1",
            {
                "userId": "ignored: the targeting key wins",
                "sessionId": "s1",
                "remoteAddress": "10.0.0.1",
                "environment": "dev",
                "appName": "shop",
                "currentTime": when,
                "country": "AT",
                "plan": "free",
                "properties": {"country": "DE", "tier": "gold"},
            },
        )
    )
    assert context.user_id == "u1"
    assert (context.session_id, context.remote_address) == ("s1", "10.0.0.1")
    assert (context.environment, context.app_name) == ("dev", "shop")
    assert context.current_time == when.isoformat()
    # A top-level attribute wins over a `properties` entry, as Context.of (and UnleashClient) do.
    assert dict(context.properties) == {"country": "AT", "plan": "free", "tier": "gold"}
    assert context.value("country") == "AT"
    no_key = to_context(EvaluationContext(None, {"userId": "u2"}))
    assert no_key.user_id == "u2"
    assert to_context(None).user_id is None


def test_the_real_openfeature_client_resolves_variants_and_contexts() -> None:
    from openfeature import api  # noqa: PLC0415

    aurora = live(AuroraClient("http://127.0.0.1:9", bootstrap=TARGETED))
    api.set_provider_and_wait(AuroraProvider(aurora, ready_timeout=0.01))
    try:
        of = api.get_client()
        details = of.get_string_details("color", "", EvaluationContext("1"))
        assert (details.value, details.variant, details.flag_key) == ("#00f", "v1", "color")
        assert of.get_integer_value("limit", 0, EvaluationContext("1")) == 42
        assert of.get_object_value("layout", {}, EvaluationContext("1")) == {"columns": 3}
        assert of.get_boolean_value("beta-users", False, EvaluationContext("7")) is True
        api.set_evaluation_context(EvaluationContext("7"))  # the global context is merged in
        assert of.get_boolean_value("beta-users", False) is True
        missing = of.get_string_details("nothing", "d", EvaluationContext("1"))
        assert (missing.value, missing.error_code) == ("d", ErrorCode.FLAG_NOT_FOUND)
    finally:
        api.clear_evaluation_context()
        api.clear_providers()
