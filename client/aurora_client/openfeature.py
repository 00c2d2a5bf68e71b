"""An OpenFeature provider backed by AuroraClient.

Install with `pip install 'aurora-config-client[openfeature]'`, then:

    from openfeature import api
    from aurora_client import AuroraClient
    from aurora_client.openfeature import AuroraProvider

    client = AuroraClient("http://config:8004", "production", "checkout").__enter__()
    api.set_provider_and_wait(AuroraProvider(client))
    api.get_client().get_boolean_value("new_dashboard", False, EvaluationContext("user-123"))

Flags resolve as booleans (the evaluation context's targeting key is the user id); configuration
values resolve as booleans, strings, numbers and objects by their JSON type (a flag wins over a
configuration of the same key for booleans). Reasons map from Aurora's: DISABLED -> DISABLED,
FULL_ROLLOUT -> STATIC, ROLLOUT_IN/ROLLOUT_OUT -> SPLIT, NO_USER -> DEFAULT; any of them becomes
STALE while the client is not confirmed live. A key that is neither a flag nor a configuration is
FLAG_NOT_FOUND; a flag asked for as a string, number or object, or a value of another type,
TYPE_MISMATCH; nothing loaded yet PROVIDER_NOT_READY (a client in ERROR with a bootstrap or saved
state still serves it, as STALE).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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

T = TypeVar("T")

_REASONS = {
    Reason.DISABLED: OFReason.DISABLED,
    Reason.FULL_ROLLOUT: OFReason.STATIC,
    Reason.ROLLOUT_IN: OFReason.SPLIT,
    Reason.ROLLOUT_OUT: OFReason.SPLIT,
    Reason.NO_USER: OFReason.DEFAULT,
}


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

    # -- flags -----------------------------------------------------------------------------

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        if (not_ready := self._not_ready(default_value)) is not None:
            return not_ready
        user = evaluation_context.targeting_key if evaluation_context else None
        evaluation = self.client.evaluation(flag_key, user)
        if evaluation is None:
            return self._value(flag_key, default_value, lambda v: isinstance(v, bool), bool)
        reason = _REASONS[evaluation.reason]
        return FlagResolutionDetails(
            value=evaluation.enabled,
            reason=OFReason.STALE if self.client.status is not Status.READY else reason,
            variant="on" if evaluation.enabled else "off",
            flag_metadata={
                "aurora_reason": str(evaluation.reason),
                **({"bucket": evaluation.bucket} if evaluation.bucket else {}),
            },
        )

    # -- configuration values --------------------------------------------------------------

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        return self._value(flag_key, default_value, lambda v: isinstance(v, str), str)

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        return self._value(
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

        return self._value(flag_key, default_value, is_number, float)

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[Any] | Mapping[str, Any],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[Any] | Mapping[str, Any]]:
        return self._value(
            flag_key, default_value, lambda v: isinstance(v, list | dict), lambda v: v
        )

    def _value(self, key: str, default: T, accepts: Any, convert: Any) -> FlagResolutionDetails[T]:
        if (not_ready := self._not_ready(default)) is not None:
            return not_ready
        value = self.client.get(key, _MISSING)
        if value is _MISSING:
            if self.client.evaluation(key) is not None:
                return _error(default, ErrorCode.TYPE_MISMATCH, f"{key!r} is a flag (boolean)")
            return _error(default, ErrorCode.FLAG_NOT_FOUND, f"no flag or configuration {key!r}")
        if not accepts(value):
            return _error(default, ErrorCode.TYPE_MISMATCH, f"{key!r} is {type(value).__name__}")
        stale = self.client.status is not Status.READY
        return FlagResolutionDetails(
            value=convert(value), reason=OFReason.STALE if stale else OFReason.STATIC
        )

    def _not_ready(self, default: T) -> FlagResolutionDetails[T] | None:
        # Nothing loaded (NOT_READY, or ERROR with nothing to serve). A client in ERROR because
        # its token is refused still serves its bootstrap or saved state, as STALE.
        if not self.client.loaded:
            return _error(
                default, ErrorCode.PROVIDER_NOT_READY, self.client.last_error or "not ready"
            )
        return None


def _error(default: T, code: ErrorCode, message: str) -> FlagResolutionDetails[T]:
    return FlagResolutionDetails(
        value=default, reason=OFReason.ERROR, error_code=code, error_message=message
    )
