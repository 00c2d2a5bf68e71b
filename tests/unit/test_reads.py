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

    async def targeting(self, environment: str) -> tuple[list[Any], list[Any]]:
        if self.down:
            raise RedisConnectionError("connection refused")
        return list(self.flags.values()), []


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


# -- targeting (issue 10): one evaluation through every tier, today's reasons kept ------------

ENV = "production"
SEGMENT = {
    "name": "testers",
    "environment": ENV,
    "constraints": [{"context_name": "userId", "operator": "IN", "values": ["7"]}],
    "version": 1,
}
RULE = {
    "id": "beta-de",
    "constraints": [{"context_name": "country", "operator": "IN", "values": ["DE"]}],
    "segments": ["testers"],
    "rollout": {"percentage": 100, "stickiness": "default", "group_id": None},
    "variants": [],
}
TARGETED = {
    "flag_key": "t",
    "environment": ENV,
    "is_enabled": True,
    "rollout_percentage": 0,  # not used: the rules decide
    "rules": [RULE],
    "variants": [],
    "prerequisites": [],
    "version": 3,
}
CHILD = {  # no rules: its own rollout, once its parent is on for the context
    "flag_key": "child",
    "environment": ENV,
    "is_enabled": True,
    "rollout_percentage": 100,
    "prerequisites": [{"flag_key": "t", "enabled": True, "variants": []}],
    "version": 1,
}
PLAIN_WITH_VARIANTS = {
    "flag_key": "p",
    "environment": ENV,
    "is_enabled": True,
    "rollout_percentage": 100,
    "variants": [{"name": "blue", "weight": 1000, "weight_type": "variable"}],
    "version": 2,
}
DE = {"country": "DE"}


def replica_with(*flags: dict[str, Any]) -> Any:
    from cache.read_model import Snapshot  # noqa: PLC0415
    from cache.replica import Replica  # noqa: PLC0415

    replica = Replica()
    replica.hydrate(ENV, Snapshot("e1", 1, [], list(flags), segments=[SEGMENT]))
    return replica


class TargetingModel:
    """Redis answering flag and targeting reads; counts the whole-environment ones."""

    def __init__(self) -> None:
        self.items = {f["flag_key"]: f for f in (FLAG, TARGETED, CHILD, PLAIN_WITH_VARIANTS)}
        self.whole_reads = 0

    async def flag(self, environment: str, key: str) -> dict[str, Any] | None:
        return self.items.get(key)

    async def targeting(self, environment: str) -> tuple[list[Any], list[Any]]:
        self.whole_reads += 1
        return list(self.items.values()), [SEGMENT]


class TargetingStore:
    """SQL answering the flag by key and the environment's flags and segments."""

    def __init__(self) -> None:
        self.items = {f["flag_key"]: f for f in (FLAG, TARGETED, CHILD, PLAIN_WITH_VARIANTS)}

    async def run(self, use_case: Callable[..., Any], env: str, *args: Any) -> Any:
        from service.usecases import flags, targets  # noqa: PLC0415

        if use_case is targets.load:
            return list(self.items.values()), [SEGMENT]
        assert use_case is flags.get_by_key
        (key,) = args
        if key not in self.items:
            raise NotFound(key)
        return SimpleNamespace(snapshot=lambda: self.items[key])


def tiers() -> list[tuple[str, Reads]]:
    """The same data behind each tier: the replica, Redis (no replica), SQL (Redis down)."""
    all_flags = (FLAG, TARGETED, CHILD, PLAIN_WITH_VARIANTS)
    replica = Reads(
        TargetingStore(),  # type: ignore[arg-type]
        TargetingModel(),  # type: ignore[arg-type]
        replica_with(*all_flags),
        CircuitBreaker(),
    )
    redis = Reads(TargetingStore(), TargetingModel(), NoReplica(), CircuitBreaker())  # type: ignore[arg-type]
    down = FakeRedisModel()
    down.down = True
    sql = Reads(TargetingStore(), down, NoReplica(), CircuitBreaker(threshold=1))  # type: ignore[arg-type]
    return [("replica", replica), ("redis", redis), ("database", sql)]


@pytest.mark.anyio
@pytest.mark.parametrize("tier", ["replica", "redis", "database"])
async def test_targeted_flags_evaluate_alike_in_every_tier(tier: str) -> None:
    from aurora_client.targeting import Context, Reason  # noqa: PLC0415

    reads = dict(tiers())[tier]
    item, result = await reads.evaluate_context(ENV, "t", Context.of({"userId": "7", **DE}))
    assert (item["version"], result.enabled, result.reason) == (3, True, Reason.TARGETING_MATCH)
    assert (result.rule_index, result.rule_id) == (0, "beta-de")
    _item, result = await reads.evaluate_context(ENV, "t", Context.of({"userId": "8", **DE}))
    assert (result.enabled, result.reason) == (False, Reason.DEFAULT)
    _item, result = await reads.evaluate_context(ENV, "child", Context.of({"userId": "8"}))
    assert (result.enabled, result.reason) == (False, Reason.PREREQUISITE_FAILED)

    everything = await reads.evaluate_all(ENV, Context.of({"userId": "7", "properties": DE}))
    assert {key: r.enabled for key, (_i, r) in everything.items()} == {
        "f": True,
        "t": True,
        "child": True,
        "p": True,
    }
    assert everything["p"][1].variant.name == "blue"
    with pytest.raises(NotFound):
        await reads.evaluate_context(ENV, "missing", Context.of({}))
    assert reads.served[tier] > 0
    assert set(reads.served) <= {tier}


@pytest.mark.anyio
@pytest.mark.parametrize("tier", ["replica", "redis", "database"])
async def test_the_get_endpoints_keep_todays_reasons(tier: str) -> None:
    """A targeted flag's result in today's enum (docs/TARGETING.md); a flag without rules or
    prerequisites, variants or not, answers exactly as before."""
    reads = dict(tiers())[tier]

    async def reason(key: str, user_id: str | None, properties: Any = None) -> tuple[bool, str]:
        found = await reads.evaluate(ENV, key, user_id, properties)
        assert await reads.check(ENV, key, user_id, properties) is found.result.enabled
        return found.result.enabled, found.result.reason.value

    assert await reason("t", "7", DE) == (True, "ROLLOUT_IN")
    assert await reason("t", "7", None) == (False, "ROLLOUT_OUT")  # no country: no match
    assert await reason("t", None, DE) == (False, "NO_USER")
    assert await reason("child", "7", DE) == (True, "ROLLOUT_IN")
    assert await reason("child", "8", DE) == (False, "ROLLOUT_OUT")
    assert await reason("p", None) == (True, "FULL_ROLLOUT")
    assert await reason("f", "1") == (True, "FULL_ROLLOUT")
    found = await reads.evaluate(ENV, "t", "7", DE)
    assert found.targeting is not None
    assert found.targeting.rule_id == "beta-de"
    assert found.result.bucket is not None
    assert (found.flag.key, found.flag.version) == ("t", 3)
    assert (await reads.evaluate(ENV, "p", None)).targeting is None  # today's path
    assert await reads.bulk_flags(ENV, "7", DE) == {"f": True, "t": True, "child": True, "p": True}
    assert await reads.bulk_flags(ENV, "8") == {"f": True, "t": False, "child": False, "p": True}
    with pytest.raises(NotFound):
        await reads.evaluate(ENV, "missing", "7")
    with pytest.raises(NotFound):
        await reads.check(ENV, "missing", "7")


@pytest.mark.anyio
async def test_a_disabled_targeted_flag_is_disabled() -> None:
    reads = Reads(
        TargetingStore(),  # type: ignore[arg-type]
        TargetingModel(),  # type: ignore[arg-type]
        replica_with(TARGETED | {"is_enabled": False}),
        CircuitBreaker(),
    )
    found = await reads.evaluate(ENV, "t", "7", DE)
    assert (found.result.enabled, found.result.reason.value) == (False, "DISABLED")


@pytest.mark.anyio
async def test_a_plain_check_through_redis_reads_only_its_own_item() -> None:
    model = TargetingModel()
    reads = Reads(TargetingStore(), model, NoReplica(), CircuitBreaker())  # type: ignore[arg-type]
    assert await reads.check(ENV, "p", "1")
    assert model.whole_reads == 0
    assert await reads.check(ENV, "t", "7", DE)
    assert model.whole_reads == 1


@pytest.mark.anyio
async def test_the_replica_compiles_on_apply_not_per_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cache import targets  # noqa: PLC0415

    replica = replica_with(FLAG, TARGETED, CHILD)
    reads = Reads(TargetingStore(), TargetingModel(), replica, CircuitBreaker())  # type: ignore[arg-type]
    compiled: list[str] = []
    original = targets.Flag.of

    def counting(item: Any) -> Any:
        compiled.append(item["flag_key"])
        return original(item)

    monkeypatch.setattr(targets.Flag, "of", counting)
    for _ in range(3):
        assert await reads.check(ENV, "t", "7", DE)
        assert await reads.check(ENV, "f", "7")
        await reads.evaluate(ENV, "child", "7", DE)
    assert compiled == []
    from aurora_client.events import ChangeEvent  # noqa: PLC0415

    off = TARGETED | {"is_enabled": False, "version": 4}
    replica.apply_local(ChangeEvent("flag", "upsert", "t", ENV, None, 4, off), revision=2)
    assert compiled == ["t"]
    assert not await reads.check(ENV, "t", "7", DE)
    assert not await reads.check(ENV, "child", "7", DE)  # its parent is off now


@pytest.mark.anyio
async def test_a_flag_that_cannot_be_compiled_answers_error_and_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aurora_client.targeting import Context, Reason  # noqa: PLC0415

    from cache import targets  # noqa: PLC0415

    def refuse(item: Any) -> Any:
        raise ValueError("written by a newer version")

    monkeypatch.setattr(targets.Flag, "of", refuse)
    replica = replica_with(TARGETED)
    monkeypatch.undo()
    reads = Reads(TargetingStore(), TargetingModel(), replica, CircuitBreaker())  # type: ignore[arg-type]
    assert not await reads.check(ENV, "t", "7", DE)
    _item, result = await reads.evaluate_context(ENV, "t", Context.of({"userId": "7", **DE}))
    assert (result.enabled, result.reason, result.error_code) == (
        False,
        Reason.ERROR,
        "INVALID_FLAG",
    )
    assert (await reads.evaluate(ENV, "t", "7", DE)).result.reason.value == "ROLLOUT_OUT"


def test_query_properties_take_unleash_frontend_parameters() -> None:
    from service.context import query_properties  # noqa: PLC0415
    from service.errors import InvalidInput, PayloadTooLarge  # noqa: PLC0415

    pairs = [
        ("user_id", "7"),
        ("properties[country]", "DE"),
        ("properties[Hellø|🚀]", "ø"),
        ("properties[country]", "AT"),  # repeated: the last one counts
        ("properties", "x"),
        ("propertiesX]", "x"),
    ]
    assert query_properties(pairs, "7") == {"country": "AT", "Hellø|🚀": "ø"}
    assert query_properties([("user_id", "7")], "7") is None
    with pytest.raises(InvalidInput):
        query_properties([("properties[]", "x")])
    with pytest.raises(PayloadTooLarge, match="AURORA_MAX_CONTEXT_BYTES"):
        query_properties([("properties[a]", "x" * 100)], "7", limit=100)
    assert query_properties([("properties[a]", "x" * 50)], "7", limit=100) == {"a": "x" * 50}
