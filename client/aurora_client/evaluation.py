"""Percentage rollout: the one evaluation of a feature flag, shared by server and SDK.

bucket = murmur3_x86_32(f"{flag_key}:{user_id}", seed=0, unsigned) % 100 + 1, and a user is in
the rollout when bucket <= rollout_percentage. This is Unleash's gradual-rollout bucketing with the
group id set to the flag key, so cohorts carry over from Unleash. Because a user's bucket never
changes, raising the percentage only ever adds users.

Pure and dependency-light (stdlib + mmh3): no I/O, no framework, safe to call on any hot path.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

from mmh3 import hash as murmur3

from aurora_client.state import FlagState

FULL_ROLLOUT = 100


class Reason(StrEnum):
    """Why an evaluation came out as it did (OpenFeature-style reasons)."""

    DISABLED = "DISABLED"  # the flag is switched off
    FULL_ROLLOUT = "FULL_ROLLOUT"  # on at 100 %: on for everyone, with or without a user
    NO_USER = "NO_USER"  # partial rollout and no user id: off
    ROLLOUT_IN = "ROLLOUT_IN"  # the user's bucket is within the percentage
    ROLLOUT_OUT = "ROLLOUT_OUT"  # the user's bucket is above the percentage


class Evaluation(NamedTuple):
    enabled: bool
    reason: Reason
    bucket: int | None  # 1..100 when a user id was given, else None


def _outcomes(enabled: bool, reason: Reason) -> tuple[Evaluation, ...]:
    """Every result with this reason: index 0 without a user, else the bucket 1..100."""
    return (
        Evaluation(enabled, reason, None),
        *(Evaluation(enabled, reason, bucket) for bucket in range(1, 101)),
    )


# An evaluation has only 5 x 101 possible results, so they are built once, here, and evaluate()
# picks one: building a result per call (or even reading an enum member) cost more than the
# hash itself, and this runs on every flag check of every service.
_DISABLED = _outcomes(False, Reason.DISABLED)
_FULL = _outcomes(True, Reason.FULL_ROLLOUT)
_NO_USER = _outcomes(False, Reason.NO_USER)
_IN = _outcomes(True, Reason.ROLLOUT_IN)
_OUT = _outcomes(False, Reason.ROLLOUT_OUT)


def bucket_of(flag_key: str, user_id: str) -> int:
    """The user's stable bucket, 1..100, for this flag."""
    return murmur3(flag_key + ":" + user_id, 0, False) % 100 + 1


def evaluate(flag: FlagState, user_id: str | None) -> Evaluation:
    """The one rule. Hot: it runs for every flag check in every service, so it stays inline."""
    # index 0: no user; else the bucket (the same hash as bucket_of, inlined)
    bucket = 0 if user_id is None else murmur3(flag.key + ":" + user_id, 0, False) % 100 + 1
    if not flag.is_enabled:
        return _DISABLED[bucket]
    if flag.rollout_percentage >= FULL_ROLLOUT:
        return _FULL[bucket]
    if bucket == 0:
        return _NO_USER[0]
    return _IN[bucket] if bucket <= flag.rollout_percentage else _OUT[bucket]
