"""An OpenFeature provider backed by AuroraClient.

Install with `pip install 'aurora-config-client[openfeature]'`, then:

    from openfeature import api
    from aurora_client import AuroraClient
    from aurora_client.openfeature import AuroraProvider

    client = AuroraClient("http://config:8004", "production", "checkout").__enter__()
    api.set_provider_and_wait(AuroraProvider(client))
    api.get_client().get_boolean_value("new_dashboard", False, EvaluationContext("user-123"))

Which value a key resolves to (the precedence):

- A boolean: a flag of that key, if there is one (its `enabled` for the evaluation context);
  otherwise a boolean configuration value of that key.
- A string, number or object: a flag of that key that has variants (its own or its rules'),
  from the variant's payload; otherwise the configuration value of that key, as before
  targeting (a flag without variants has no such value: a configuration of the same key is
  served, and without one it is a TYPE_MISMATCH).

The evaluation context maps onto Aurora's: `targeting_key` is `userId` (it wins over a `userId`
attribute); the attributes `userId`, `sessionId`, `remoteAddress`, `environment`, `appName` and
`currentTime` (a datetime is sent as ISO 8601) are the standard fields; a `properties` mapping
attribute gives properties; every other attribute is a property too, and wins over a `properties`
entry of the same name (as UnleashClient and the server read a context). Values are stringified
as Unleash does.

Reasons. A flag as it was before targeting (no rules, variants or prerequisites) resolves as it
always did: DISABLED, STATIC (100 %), SPLIT (partial rollout), DEFAULT (no user, partial rollout),
variant "on"/"off". Any other flag: TARGETING_MATCH (a rule's constraints decided; the rule's id
is in the flag metadata), SPLIT (a percentage or a variant split decided), DEFAULT (no rule
matched, or an enabled flag's variant has no payload, so the default value is returned),
DISABLED (the flag is off or its prerequisites do not hold; a string, number or object then
  answers the default value)
and ERROR (the evaluation failed: GENERAL with Aurora's error code). A payload of another type is
a TYPE_MISMATCH (string: `string` or `csv`; number: `number`; object: `json` (parsed) or `csv` (a
list of strings)); a payload that does not parse as its type is a PARSE_ERROR. Any reason becomes
STALE while the client is not confirmed live. A key that is neither a flag nor a configuration is
FLAG_NOT_FOUND; nothing loaded yet PROVIDER_NOT_READY (a client in ERROR with a bootstrap or saved
state still serves it, as STALE).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import ErrorCode, ProviderNotReadyError
from openfeature.flag_evaluation import FlagResolutionDetails
from openfeature.flag_evaluation import Reason as OFReason
from openfeature.provider import AbstractProvider, Metadata

from aurora_client._cache import _MISSING
from aurora_client._client import AuroraClient, Status
from aurora_client.evaluation import Reason
from aurora_client.targeting import Context, Result
from aurora_client.targeting import Reason as TargetingReason

T = TypeVar("T")

_REASONS = {
    Reason.DISABLED: OFReason.DISABLED,
    Reason.FULL_ROLLOUT: OFReason.STATIC,
    Reason.ROLLOUT_IN: OFReason.SPLIT,
    Reason.ROLLOUT_OUT: OFReason.SPLIT,
    Reason.NO_USER: OFReason.DEFAULT,
}
_TARGETING_REASONS = {
    TargetingReason.DISABLED: OFReason.DISABLED,
    TargetingReason.PREREQUISITE_FAILED: OFReason.DISABLED,
    TargetingReason.TARGETING_MATCH: OFReason.TARGETING_MATCH,
    TargetingReason.SPLIT: OFReason.SPLIT,
    TargetingReason.DEFAULT: OFReason.DEFAULT,
    TargetingReason.ERROR: OFReason.ERROR,
}


class _Mismatch(Exception):
    """A variant's payload cannot be the requested type (TYPE_MISMATCH or PARSE_ERROR)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def _text(payload: Mapping[str, str]) -> str:
    if payload["type"] not in ("string", "csv"):
        raise _Mismatch(ErrorCode.TYPE_MISMATCH, f"the payload is {payload['type']}, not a string")
    return payload["value"]


def _number(convert: Callable[[str], T]) -> Callable[[Mapping[str, str]], T]:
    def parse(payload: Mapping[str, str]) -> T:
        if payload["type"] != "number":
            raise _Mismatch(
                ErrorCode.TYPE_MISMATCH, f"the payload is {payload['type']}, not a number"
            )
        try:
            return convert(payload["value"].strip())
        except ValueError:
            raise _Mismatch(
                ErrorCode.PARSE_ERROR, f"the payload {payload['value']!r} is not {convert.__name__}"
            ) from None

    return parse


def _object(payload: Mapping[str, str]) -> Sequence[Any] | Mapping[str, Any]:
    if payload["type"] == "csv":
        return [part.strip() for part in payload["value"].split(",")]
    if payload["type"] != "json":
        raise _Mismatch(ErrorCode.TYPE_MISMATCH, f"the payload is {payload['type']}, not json")
    try:
        value = json.loads(payload["value"])
    except ValueError:
        raise _Mismatch(ErrorCode.PARSE_ERROR, "the json payload does not parse") from None
    if not isinstance(value, list | dict):
        raise _Mismatch(ErrorCode.TYPE_MISMATCH, f"the json payload is {type(value).__name__}")
    return value


def to_context(evaluation_context: EvaluationContext | None) -> Context:
    """OpenFeature's evaluation context as Aurora's (the mapping in the module docstring): the
    attributes are the context's JSON shape, read by `Context.of` as the server reads it."""
    if evaluation_context is None:
        return Context.of(None)
    data: dict[str, Any] = {
        name: value.isoformat() if isinstance(value, datetime) else value
        for name, value in evaluation_context.attributes.items()
    }
    if evaluation_context.targeting_key:
        data["userId"] = evaluation_context.targeting_key
    return Context.of(data)


class AuroraProvider(AbstractProvider):
    def __init__(self, client: AuroraClient, *, ready_timeout: float = 5.0) -> None:
        super().__init__()
        self.client = client
        self.ready_timeout = ready_timeout
        client.on_status(self._status_changed)

    def get_metadata(self) -> Metadata:
        return Metadata(name="aurora-config")

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        # Refuse to start only with nothing to serve: a client whose token is refused (ERROR)
        # but which holds a bootstrap or saved state serves it, as STALE (see _not_ready).
        if not self.client.wait_until_ready(self.ready_timeout) and not self.client.loaded:
            raise ProviderNotReadyError(self.client.last_error or "no state from the server yet")

    def _status_changed(self, status: Status) -> None:
        details = ProviderEventDetails(message=f"aurora client is {status}")
        if status is Status.READY:
            self.emit_provider_ready(details)
        elif status is Status.STALE:
            self.emit_provider_stale(details)
        elif status is Status.ERROR:
            self.emit_provider_error(details)

    # -- booleans: a flag, else a configuration value --------------------------------------

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        if (not_ready := self._not_ready(default_value)) is not None:
            return not_ready
        cache = self.client._cache
        if flag_key in cache.plain:  # a flag as before targeting: resolved as it always was
            user = evaluation_context.targeting_key if evaluation_context else None
            evaluation = self.client.evaluation(flag_key, user)
            if evaluation is not None:
                return FlagResolutionDetails(
                    value=evaluation.enabled,
                    reason=self._fresh(_REASONS[evaluation.reason]),
                    variant="on" if evaluation.enabled else "off",
                    flag_metadata={
                        "aurora_reason": str(evaluation.reason),
                        **({"bucket": evaluation.bucket} if evaluation.bucket else {}),
                    },
                )
        result = self.client.details(flag_key, to_context(evaluation_context))
        if result is None:
            return self._value(flag_key, default_value, lambda v: isinstance(v, bool), bool)
        if result.reason is TargetingReason.ERROR:
            return _failed(default_value, result)
        return self._flag(result, result.enabled)

    # -- strings, numbers, objects: a flag's variant payload, else a configuration value ----

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        return self._payload(flag_key, default_value, evaluation_context, _text) or self._value(
            flag_key, default_value, lambda v: isinstance(v, str), str
        )

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        return self._payload(
            flag_key, default_value, evaluation_context, _number(int)
        ) or self._value(
            flag_key, default_value, lambda v: isinstance(v, int) and not isinstance(v, bool), int
        )

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        def is_number(value: Any) -> bool:
            return isinstance(value, int | float) and not isinstance(value, bool)

        return self._payload(
            flag_key, default_value, evaluation_context, _number(float)
        ) or self._value(flag_key, default_value, is_number, float)

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[Any] | Mapping[str, Any],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[Any] | Mapping[str, Any]]:
        return self._payload(flag_key, default_value, evaluation_context, _object) or self._value(
            flag_key, default_value, lambda v: isinstance(v, list | dict), lambda v: v
        )

    def _payload(
        self,
        key: str,
        default: T,
        evaluation_context: EvaluationContext | None,
        parse: Callable[[Mapping[str, str]], T],
    ) -> FlagResolutionDetails[T] | None:
        """The flag's variant payload as this type; None when the key is not a flag with
        variants (then it is resolved as a configuration value)."""
        if not self.client.loaded or not self.client._cache.has_variants(key):
            return None
        result = self.client.details(key, to_context(evaluation_context))
        if result is None:  # deleted since
            return None
        if result.reason is TargetingReason.ERROR:
            return _failed(default, result)
        payload = result.variant.payload
        if payload is None or not result.variant.enabled:
            # Off: the flag's reason. On, but its variant carries no value: the default's.
            return self._flag(result, default, OFReason.DEFAULT if result.enabled else None)
        try:
            value = parse(payload)
        except _Mismatch as exc:
            return _error(default, exc.code, f"{key!r}, variant {result.variant.name!r}: {exc}")
        return self._flag(result, value)

    def _flag(
        self, result: Result, value: T, reason: OFReason | None = None
    ) -> FlagResolutionDetails[T]:
        reason = reason or _TARGETING_REASONS[result.reason]
        metadata: dict[str, bool | int | float | str] = {
            "aurora_reason": str(result.reason),
            "feature_enabled": result.variant.feature_enabled,
        }
        if result.rule_id is not None:
            metadata["rule_id"] = result.rule_id
        if result.rule_index is not None:
            metadata["rule_index"] = result.rule_index
        return FlagResolutionDetails(
            value=value,
            reason=self._fresh(reason),
            variant=result.variant.name,
            flag_metadata=metadata,
        )

    # -- configuration values --------------------------------------------------------------

    def _value(self, key: str, default: T, accepts: Any, convert: Any) -> FlagResolutionDetails[T]:
        if (not_ready := self._not_ready(default)) is not None:
            return not_ready
        value = self.client.get(key, _MISSING)
        if value is _MISSING:
            if key in self.client._cache.flags:
                return _error(
                    default, ErrorCode.TYPE_MISMATCH, f"{key!r} is a flag without variants"
                )
            return _error(default, ErrorCode.FLAG_NOT_FOUND, f"no flag or configuration {key!r}")
        if not accepts(value):
            return _error(default, ErrorCode.TYPE_MISMATCH, f"{key!r} is {type(value).__name__}")
        return FlagResolutionDetails(value=convert(value), reason=self._fresh(OFReason.STATIC))

    def _fresh(self, reason: OFReason) -> OFReason:
        return reason if self.client.status is Status.READY else OFReason.STALE

    def _not_ready(self, default: T) -> FlagResolutionDetails[T] | None:
        # Nothing loaded (NOT_READY, or ERROR with nothing to serve). A client in ERROR because
        # its token is refused still serves its bootstrap or saved state, as STALE.
        if not self.client.loaded:
            return _error(
                default, ErrorCode.PROVIDER_NOT_READY, self.client.last_error or "not ready"
            )
        return None


def _failed(default: T, result: Result) -> FlagResolutionDetails[T]:
    return _error(default, ErrorCode.GENERAL, f"evaluation failed: {result.error_code}")


def _error(default: T, code: ErrorCode, message: str) -> FlagResolutionDetails[T]:
    return FlagResolutionDetails(
        value=default, reason=OFReason.ERROR, error_code=code, error_message=message
    )
