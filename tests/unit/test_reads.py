"""The read path's tiers (service/reads.py) with fakes: which tier answers, and the breaker."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from cache.breaker import CircuitBreaker
from service.errors import NotFound
from service.reads import Reads

FLAG = {
    "flag_key": "f",
    "environment": "production",
    "is_enabled": True,
    "rollout_percentage": 100,
    "version": 1,
}


class FakeRedisModel:
    """The read model's flag read: down (raises), or answering from `flags`."""

    def __init__(self) -> None:
        self.down = False
        self.flags: dict[str, dict[str, Any]] = {"f": FLAG}

    async def flag(self, environment: str, key: str) -> dict[str, Any] | None:
        if self.down:
            raise RedisConnectionError("connection refused")
        return self.flags.get(key)


class FakeStore:
    async def run(self, use_case: Callable[..., Any], env: str, key: str) -> Any:
        return SimpleNamespace(snapshot=lambda: FLAG)


class NoReplica:
    def copy(self, environment: str) -> None:
        return None


@pytest.mark.anyio
async def test_a_probe_answered_with_a_miss_closes_the_breaker() -> None:
    """Redis comes back while the traffic is misses: the first probe's 404 is an answer, so
    the reads after it go to Redis again, not to SQL for another cooldown after each miss."""
    model = FakeRedisModel()
    breaker = CircuitBreaker(threshold=1, cooldown=3600.0)
    reads = Reads(FakeStore(), model, NoReplica(), breaker)  # type: ignore[arg-type]
    model.down = True
    assert (await reads.flag("production", "f"))["flag_key"] == "f"
    assert reads.served["database"] == 1
    assert breaker.state == "open"

    model.down = False
    assert breaker.opened_at is not None
    breaker.opened_at -= breaker.cooldown  # the cooldown has passed: the next read probes
    with pytest.raises(NotFound):
        await reads.flag("production", "missing")  # the probe: Redis answers "no such flag"
    assert breaker.state == "closed"
    for _ in range(3):
        assert (await reads.flag("production", "f"))["flag_key"] == "f"
    assert reads.served == {"database": 1, "redis": 4}
