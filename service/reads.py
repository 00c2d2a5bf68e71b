"""The read path: this instance's replica, else Redis, else the database.

The replica answers with no I/O while it is trusted (see cache/replica.py). Otherwise Redis
answers, behind a circuit breaker so that requests do not each wait for a Redis that is down; a
read model that is not built yet (NotBuilt) is not a Redis failure. Last comes SQL. The read model
holds every item of an environment, so a key missing there is missing: misses never reach SQL.

Flags evaluate against the environment's compiled `Targets` (cache/targets.py): the replica's
own, compiled as changes arrive, or compiled from what Redis or SQL returned. A flag without
rules or prerequisites keeps today's evaluation and reasons (aurora_client.evaluation) on every
path; a targeted one is evaluated by aurora_client.targeting, and the GET endpoints map its
result onto today's reasons (`legacy`, documented in docs/TARGETING.md).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from aurora_client import targeting
from aurora_client.evaluation import Evaluation, Reason, bucket_of, evaluate
from aurora_client.events import config_state, flag_state
from aurora_client.state import (
    ConfigState,
    FlagState,
    JsonValue,
    Resolved,
    merge_scopes,
    resolve_value,
)
from aurora_client.targeting import Context, Result
from redis.exceptions import RedisError

from cache.breaker import CircuitBreaker
from cache.keys import config_field
from cache.read_model import NotBuilt, RedisReadModel
from cache.replica import EnvironmentCopy, Replica
from cache.targets import Targets, is_plain
from service.errors import NotFound, config_missing, flag_missing, value_missing
from service.store import Store
from service.usecases import configs, flags
from service.usecases import targets as targets_sql

T = TypeVar("T")
Item = dict[str, Any]


@dataclass(frozen=True, slots=True)
class FlagEvaluation:
    flag: FlagState
    result: Evaluation  # today's shape and reasons (GET evaluate, check, bulk)
    targeting: Result | None = None  # a targeted flag's full result (variant, reason, rule)


# What a flag that cannot be compiled answers (cache/targets.py logs why): off, reason ERROR.
INVALID_FLAG = "INVALID_FLAG"
_NO_PROPERTIES: Mapping[str, str] = {}


def context_of(user_id: str | None, properties: Mapping[str, str] | None) -> Context:
    """The context of the GET endpoints: `user_id`, and `properties[NAME]=VALUE` parameters."""
    return Context(user_id=user_id, properties=properties or _NO_PROPERTIES)


def error_result() -> Result:
    return Result(
        enabled=False,
        variant=targeting.Variant(
            name="disabled", payload=None, enabled=False, feature_enabled=False
        ),
        reason=targeting.Reason.ERROR,
        rule_index=None,
        rule_id=None,
        error_code=INVALID_FLAG,
    )


def evaluate_in(targets: Targets, env: str, key: str, context: Context) -> tuple[Item, Result]:
    """A flag of these targets, fully (variant, reason, rule): NotFound for a missing flag."""
    item = targets.items.get(key)
    if item is None:
        raise flag_missing(env, key)
    flag = targets.flags.get(key)
    if flag is None:
        return item, error_result()
    return item, targeting.evaluate(flag, context, targets.flags, targets.segments)


def legacy(result: Result, key: str, user_id: str | None) -> Evaluation:
    """A targeted flag's result in today's reasons (docs/TARGETING.md): DISABLED when the flag
    is off for everyone, ROLLOUT_IN when on for this context, else NO_USER without a user id
    and ROLLOUT_OUT with one. The bucket stays the user's stable bucket for the flag."""
    bucket = None if user_id is None else bucket_of(key, user_id)
    if result.reason is targeting.Reason.DISABLED:
        return Evaluation(False, Reason.DISABLED, bucket)
    if result.enabled:
        return Evaluation(True, Reason.ROLLOUT_IN, bucket)
    return Evaluation(False, Reason.NO_USER if user_id is None else Reason.ROLLOUT_OUT, bucket)


def evaluate_legacy(
    targets: Targets,
    env: str,
    key: str,
    user_id: str | None,
    properties: Mapping[str, str] | None,
) -> FlagEvaluation:
    state = targets.plain.get(key)
    if state is not None:
        return FlagEvaluation(state, evaluate(state, user_id))
    item, result = evaluate_in(targets, env, key, context_of(user_id, properties))
    return FlagEvaluation(flag_state(item), legacy(result, key, user_id), result)


def enabled_in(
    targets: Targets,
    env: str,
    key: str,
    user_id: str | None,
    properties: Mapping[str, str] | None,
    *,
    context: Context | None = None,
) -> bool:
    """The hot path of a check: a dict lookup and today's evaluation for a plain flag, the
    compiled flag's `is_enabled` (no Result built) for a targeted one. `context`: the one
    `context_of(user_id, properties)` built already (many flags, one context)."""
    state = targets.plain.get(key)
    if state is not None:
        return evaluate(state, user_id).enabled
    flag = targets.flags.get(key)
    if flag is None:
        if key in targets.items:
            return False  # cannot be compiled: ERROR, off
        raise flag_missing(env, key)
    if context is None:
        context = context_of(user_id, properties)
    return targeting.is_enabled(flag, context, targets.flags, targets.segments)


def _resolve(own: Item | None, shared: Item | None, service: str | None) -> Resolved | None:
    def lookup(scope: str | None) -> ConfigState | None:
        item = own if scope is not None else shared
        return None if item is None else config_state(item)

    return resolve_value(lookup, service)


def _bulk(items: Any, service: str | None) -> dict[str, JsonValue]:
    globals_: dict[str, JsonValue] = {}
    own: dict[str, JsonValue] = {}
    for item in items:
        if item.get("service_name") is None:
            globals_[item["config_key"]] = item["config_value"]
        elif item["service_name"] == service:
            own[item["config_key"]] = item["config_value"]
    return merge_scopes(globals_, own)


class Reads:
    def __init__(
        self,
        store: Store,
        read_model: RedisReadModel,
        replica: Replica,
        breaker: CircuitBreaker,
    ) -> None:
        self.store = store
        self.read_model = read_model
        self.replica = replica
        self.breaker = breaker
        self.served: Counter[str] = Counter()  # which tier answered, for /status and tests

    async def _read(
        self,
        env: str,
        from_copy: Callable[[EnvironmentCopy], T],
        from_redis: Callable[[], Awaitable[T]],
        from_sql: Callable[[], Awaitable[T]],
    ) -> T:
        copy = self.replica.copy(env)
        if copy is not None:
            self.served["replica"] += 1
            return from_copy(copy)
        if self.breaker.allows():
            # Any answer from Redis closes the breaker, a probe's included: a definitive miss
            # (404) or a model being rebuilt is Redis working. Only a failure to answer counts
            # against it (issue 9: a run of misses kept reads on SQL after Redis recovered).
            try:
                result = await from_redis()
            except NotBuilt:
                self.breaker.succeeded()  # the model is being (re)built: SQL answers meanwhile
            except (RedisError, OSError):
                self.breaker.failed()
            except NotFound:
                self.breaker.succeeded()
                self.served["redis"] += 1
                raise
            else:
                self.breaker.succeeded()
                self.served["redis"] += 1
                return result
        self.served["database"] += 1
        return await from_sql()

    # -- configurations ------------------------------------------------------------------

    async def config(self, env: str, service: str | None, key: str) -> Item:
        """The configuration stored in exactly this scope."""

        def from_copy(copy: EnvironmentCopy) -> Item:
            item = copy.configs.get(config_field(service, key))
            if item is None:
                raise config_missing(env, service, key)
            return item

        async def from_redis() -> Item:
            own, shared = await self.read_model.config_scopes(env, service, key)
            item = own if service else shared
            if item is None:
                raise config_missing(env, service, key)
            return item

        async def from_sql() -> Item:
            return (await self.store.run(configs.get_by_scope, env, service, key)).snapshot()

        return await self._read(env, from_copy, from_redis, from_sql)

    async def resolve(self, env: str, service: str | None, key: str) -> Resolved:
        """The value a service sees: its own, else the environment's global."""

        def from_copy(copy: EnvironmentCopy) -> Resolved:
            own = copy.configs.get(config_field(service, key)) if service else None
            resolved = _resolve(own, copy.configs.get(config_field(None, key)), service)
            if resolved is None:
                raise value_missing(env, service, key)
            return resolved

        async def from_redis() -> Resolved:
            resolved = _resolve(*await self.read_model.config_scopes(env, service, key), service)
            if resolved is None:
                raise value_missing(env, service, key)
            return resolved

        async def from_sql() -> Resolved:
            return await self.store.run(configs.resolve, env, service, key)

        return await self._read(env, from_copy, from_redis, from_sql)

    async def bulk_configs(self, env: str, service: str | None) -> dict[str, JsonValue]:
        async def from_redis() -> dict[str, JsonValue]:
            return _bulk((await self.read_model.snapshot(env)).configs, service)

        async def from_sql() -> dict[str, JsonValue]:
            return await self.store.run(configs.bulk, env, service)

        return await self._read(
            env, lambda copy: _bulk(copy.configs.values(), service), from_redis, from_sql
        )

    # -- flags ---------------------------------------------------------------------------

    async def flag(self, env: str, key: str) -> Item:
        def from_copy(copy: EnvironmentCopy) -> Item:
            item = copy.flags.get(key)
            if item is None:
                raise flag_missing(env, key)
            return item

        async def from_redis() -> Item:
            item = await self.read_model.flag(env, key)
            if item is None:
                raise flag_missing(env, key)
            return item

        async def from_sql() -> Item:
            return (await self.store.run(flags.get_by_key, env, key)).snapshot()

        return await self._read(env, from_copy, from_redis, from_sql)

    async def targets(self, env: str) -> Targets:
        """Every flag (items and compiled) and segment of the environment: the replica's own
        when trusted (no I/O, nothing compiled), else compiled from Redis, else from SQL."""

        return await self._read(
            env,
            lambda copy: copy.targets,
            lambda: self._redis_targets(env),
            lambda: self._sql_targets(env),
        )

    async def evaluate(
        self,
        env: str,
        key: str,
        user_id: str | None,
        properties: Mapping[str, str] | None = None,
    ) -> FlagEvaluation:
        """One flag for a user (and context properties), in today's shape and reasons: the
        GET evaluate, check and bulk endpoints. A plain flag needs only its own item from Redis
        or SQL; a targeted one the environment's flags and segments."""

        async def targeted(item: Item, load: Callable[[], Awaitable[Targets]]) -> FlagEvaluation:
            if is_plain(item):
                state = flag_state(item)
                return FlagEvaluation(state, evaluate(state, user_id))
            return evaluate_legacy(await load(), env, key, user_id, properties)

        async def from_redis() -> FlagEvaluation:
            item = await self.read_model.flag(env, key)
            if item is None:
                raise flag_missing(env, key)
            return await targeted(item, lambda: self._redis_targets(env))

        async def from_sql() -> FlagEvaluation:
            item = (await self.store.run(flags.get_by_key, env, key)).snapshot()
            return await targeted(item, lambda: self._sql_targets(env))

        return await self._read(
            env,
            lambda copy: evaluate_legacy(copy.targets, env, key, user_id, properties),
            from_redis,
            from_sql,
        )

    async def check(
        self,
        env: str,
        key: str,
        user_id: str | None,
        properties: Mapping[str, str] | None = None,
    ) -> bool:
        """Whether the flag is on: `evaluate(...).result.enabled`, without building a result
        when the replica answers (the fast path's check)."""
        copy = self.replica.copy(env)
        if copy is not None:
            self.served["replica"] += 1
            return enabled_in(copy.targets, env, key, user_id, properties)
        return (await self.evaluate(env, key, user_id, properties)).result.enabled

    async def evaluate_context(self, env: str, key: str, context: Context) -> tuple[Item, Result]:
        """One flag for a full context: its item and the result (variant, reason, rule)."""
        return evaluate_in(await self.targets(env), env, key, context)

    async def explain(self, env: str, key: str, context: Context) -> dict[str, Any]:
        """Why the flag answers what it does for this context: per prerequisite, rule and
        constraint (docs/TARGETING.md, "Explain")."""
        targets = await self.targets(env)
        flag = targets.flags.get(key)
        if flag is None:
            if key in targets.items:
                return {"error_code": INVALID_FLAG}
            raise flag_missing(env, key)
        return targeting.explain(flag, context, targets.flags, targets.segments)

    async def evaluate_all(self, env: str, context: Context) -> dict[str, tuple[Item, Result]]:
        """Every flag of the environment for one context."""
        targets = await self.targets(env)
        return {key: evaluate_in(targets, env, key, context) for key in targets.items}

    async def bulk_flags(
        self, env: str, user_id: str | None, properties: Mapping[str, str] | None = None
    ) -> dict[str, bool]:
        targets = await self.targets(env)
        context = context_of(user_id, properties)
        return {
            key: enabled_in(targets, env, key, user_id, None, context=context)
            for key in targets.items
        }

    async def _redis_targets(self, env: str) -> Targets:
        return Targets.of(*await self.read_model.targeting(env))

    async def _sql_targets(self, env: str) -> Targets:
        return Targets.of(*await self.store.run(targets_sql.load, env))
