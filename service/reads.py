"""The read path: this instance's replica, else Redis, else the database.

The replica answers with no I/O while it is trusted (see cache/replica.py). Otherwise Redis
answers, behind a circuit breaker so that requests do not each wait for a Redis that is down; a
read model that is not built yet (NotBuilt) is not a Redis failure. Last comes SQL. The read model
holds every item of an environment, so a key missing there is missing: misses never reach SQL.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aurora_client.evaluation import Evaluation, evaluate
from aurora_client.events import config_state, flag_state
from aurora_client.state import (
    ConfigState,
    FlagState,
    JsonValue,
    Resolved,
    merge_scopes,
    resolve_value,
)
from redis.exceptions import RedisError

from cache.breaker import CircuitBreaker
from cache.keys import config_field
from cache.read_model import NotBuilt, RedisReadModel
from cache.replica import EnvironmentCopy, Replica
from service.errors import NotFound, config_missing, flag_missing, value_missing
from service.store import Store
from service.usecases import configs, flags

T = TypeVar("T")
Item = dict[str, Any]


@dataclass(frozen=True, slots=True)
class FlagEvaluation:
    flag: FlagState
    result: Evaluation


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

    async def evaluate(self, env: str, key: str, user_id: str | None) -> FlagEvaluation:
        state = flag_state(await self.flag(env, key))
        return FlagEvaluation(state, evaluate(state, user_id))

    async def bulk_flags(self, env: str, user_id: str | None) -> dict[str, bool]:
        def evaluated(items: Any) -> dict[str, bool]:
            return {i["flag_key"]: evaluate(flag_state(i), user_id).enabled for i in items}

        async def from_redis() -> dict[str, bool]:
            return evaluated((await self.read_model.snapshot(env)).flags)

        async def from_sql() -> dict[str, bool]:
            return await self.store.run(flags.bulk, env, user_id)

        return await self._read(
            env, lambda copy: evaluated(copy.flags.values()), from_redis, from_sql
        )
