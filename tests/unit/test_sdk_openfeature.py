"""The OpenFeature provider on a bootstrapped client (no server): lookups by type."""

from __future__ import annotations

from typing import Any

import pytest
from aurora_client import AuroraClient, Status
from aurora_client.openfeature import AuroraProvider
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
