"""Percentage rollout: the one evaluation of a feature flag, shared by server and SDK.

bucket = murmur3_x86_32(f"{flag_key}:{user_id}", seed=0, unsigned) % 100 + 1, and a user is in
the rollout when bucket <= rollout_percentage. This is Unleash's gradual-rollout bucketing with the
group id set to the flag key, so cohorts carry over from Unleash. Because a user's bucket never
changes, raising the percentage only ever adds users.

Pure and dependency-light (stdlib + mmh3): no I/O, no framework, safe to call on any hot path.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import mmh3

from aurora_client.state import FlagState

FULL_ROLLOUT = 100


class Reason(StrEnum):
    """Why an evaluation came out as it did (OpenFeature-style reasons)."""

    DISABLED = "DISABLED"  # the flag is switched off
    FULL_ROLLOUT = "FULL_ROLLOUT"  # on at 100 %: on for everyone, with or without a user
    NO_USER = "NO_USER"  # partial rollout and no user id: off
    ROLLOUT_IN = "ROLLOUT_IN"  # the user's bucket is within the percentage
    ROLLOUT_OUT = "ROLLOUT_OUT"  # the user's bucket is above the percentage


@dataclass(frozen=True, slots=True)
class Evaluation:
    enabled: bool
    reason: Reason
    bucket: int | None  # 1..100 when a user id was given, else None


def bucket_of(flag_key: str, user_id: str) -> int:
    """The user's stable bucket, 1..100, for this flag."""
    return int(mmh3.hash(f"{flag_key}:{user_id}", 0, signed=False)) % 100 + 1


def evaluate(flag: FlagState, user_id: str | None) -> Evaluation:
    bucket = bucket_of(flag.key, user_id) if user_id is not None else None
    if not flag.is_enabled:
        return Evaluation(False, Reason.DISABLED, bucket)
    if flag.rollout_percentage >= FULL_ROLLOUT:
        return Evaluation(True, Reason.FULL_ROLLOUT, bucket)
    if bucket is None:
        return Evaluation(False, Reason.NO_USER, None)
    if bucket <= flag.rollout_percentage:
        return Evaluation(True, Reason.ROLLOUT_IN, bucket)
    return Evaluation(False, Reason.ROLLOUT_OUT, bucket)
