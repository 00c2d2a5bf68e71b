"""The one rollout evaluation (aurora_client.evaluation), shared by server and SDK."""

from __future__ import annotations

import pytest
from aurora_client.evaluation import Reason, bucket_of, evaluate
from aurora_client.state import FlagState


def flag(percentage: int, *, enabled: bool = True, key: str = "AB12A") -> FlagState:
    return FlagState(
        key=key,
        environment="production",
        is_enabled=enabled,
        rollout_percentage=percentage,
        version=1,
    )


def test_unleash_client_specification_vectors() -> None:
    # client-specification 03-gradual-rollout-user-id-strategy.json: group AB12A at 50 %.
    assert evaluate(flag(50), "122").enabled is True
    assert evaluate(flag(50), "155").enabled is False


def test_known_buckets_are_stable() -> None:
    assert bucket_of("AB12A", "122") == 23
    assert bucket_of("AB12A", "155") == 100


def test_buckets_cover_1_to_100_evenly() -> None:
    buckets = [bucket_of("flag", str(user)) for user in range(20_000)]
    assert min(buckets) == 1
    assert max(buckets) == 100
    counts = [buckets.count(b) for b in range(1, 101)]
    assert max(counts) < 2 * min(counts)  # roughly uniform: 200 expected per bucket


def test_raising_the_percentage_only_adds_users() -> None:
    users = [f"user-{i}" for i in range(2_000)]
    previously: set[str] = set()
    for percentage in range(0, 101):
        now = {u for u in users if evaluate(flag(percentage, key="grow"), u).enabled}
        assert previously <= now
        previously = now
    assert previously == set(users)


def test_zero_turns_everyone_off_and_disabled_wins() -> None:
    assert not any(evaluate(flag(0), str(u)).enabled for u in range(500))
    off = evaluate(flag(100, enabled=False), "1")
    assert (off.enabled, off.reason, off.bucket) == (
        False,
        Reason.DISABLED,
        bucket_of("AB12A", "1"),
    )


def test_without_a_user_only_a_full_rollout_is_on() -> None:
    assert evaluate(flag(100), None) == evaluate(flag(100), None)
    full = evaluate(flag(100), None)
    assert (full.enabled, full.reason, full.bucket) == (True, Reason.FULL_ROLLOUT, None)
    partial = evaluate(flag(99), None)
    assert (partial.enabled, partial.reason) == (False, Reason.NO_USER)


@pytest.mark.parametrize("user", ["122", "155", "alice", "", "ünï", "x" * 300])
def test_reason_matches_the_bucket(user: str) -> None:
    result = evaluate(flag(50), user)
    assert result.bucket == bucket_of("AB12A", user)
    expected = Reason.ROLLOUT_IN if result.bucket <= 50 else Reason.ROLLOUT_OUT
    assert (result.enabled, result.reason) == (result.bucket <= 50, expected)


def test_the_group_is_the_flag_key() -> None:
    # Different flags put the same user in independent buckets.
    assert {bucket_of(f"flag-{i}", "same-user") for i in range(50)} != {
        bucket_of("flag-0", "same-user")
    }
