"""The Redis read model: every configuration and flag of an environment, kept current by Lua.

Writes arrive as ChangeEvents (from the outbox) and are applied by one Lua script that, atomically:
(a) ignores the event unless its version is newer than the one Redis holds for that item (so
replayed or reordered events are harmless; versions survive deletes as tombstones), (b) updates the
read model, (c) assigns the next revision of the environment's feed and appends the message to a
bounded stream for replay, and (d) PUBLISHes it. No subscriber can see a change before it is
readable. An environment without an epoch key has not been built (or Redis lost its data): the
script refuses to apply to it, and reads refuse to answer from it, until it is rebuilt.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from aurora_client.events import ChangeEvent
from redis.asyncio import Redis

from cache.keys import Keys, config_field, version_field
from cache.messages import FeedMessage

Item = dict[str, Any]

NOT_BUILT = -1
STALE = 0
DAMAGED = -2

# Every check comes before the first write: Redis does not roll a script back, so a command
# failing half-way (XADD refusing an id below the stream's top, say) would leave a change readable
# but never published. A revision below the feed's newest entry means Redis lost keys of this
# environment (eviction, a partial restore): DAMAGED, and the caller rebuilds the read model.
_APPLY = """
local epoch = redis.call('GET', KEYS[1])
if not epoch then return -1 end
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
local top = redis.call('XREVRANGE', KEYS[5], '+', '-', 'COUNT', 1)[1]
if top and tonumber(string.match(top[1], '^%d+')) > current then return -2 end
local version = tonumber(ARGV[3])
local held = tonumber(redis.call('HGET', KEYS[4], ARGV[2]) or '0')
if held >= version then return 0 end
redis.call('HSET', KEYS[4], ARGV[2], version)
if ARGV[4] == '' then
  redis.call('HDEL', KEYS[3], ARGV[1])
else
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
end
local rev = redis.call('INCR', KEYS[2])
local msg = '{"environment":"' .. ARGV[8] .. '","epoch":"' .. epoch .. '","revision":' .. rev ..
  ',"event":' .. ARGV[5] .. '}'
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[6], rev .. '-0', 'm', msg)
redis.call('PUBLISH', ARGV[7], msg)
return rev
"""

_SNAPSHOT = """
return {redis.call('GET', KEYS[1]) or '', redis.call('GET', KEYS[2]) or '0',
        redis.call('HGETALL', KEYS[3]), redis.call('HGETALL', KEYS[4])}
"""

# Swap the staged hashes in, start a new epoch, drop the old epoch's feed, tell subscribers.
# Refuses (returns -1) if another rebuild already set an epoch meanwhile.
_FINISH_REBUILD = """
if redis.call('EXISTS', KEYS[1]) == 1 and ARGV[4] == 'if-missing' then return -1 end
for i = 0, 2 do
  local staged, live = KEYS[7 + i], KEYS[3 + i]
  if redis.call('EXISTS', staged) == 1 then
    redis.call('RENAME', staged, live)
  else
    redis.call('DEL', live)
  end
end
redis.call('DEL', KEYS[6])
redis.call('SET', KEYS[1], ARGV[1])
local rev = tonumber(redis.call('GET', KEYS[2]) or '0')
redis.call('SET', KEYS[2], rev)
redis.call('PUBLISH', ARGV[2], '{"environment":"' .. ARGV[3] .. '","epoch":"' .. ARGV[1] ..
  '","revision":' .. rev .. ',"event":null}')
return rev
"""


@dataclass(frozen=True, slots=True)
class Tombstone:
    """The version at which a key was last deleted. A rebuild keeps it in the versions hash, as
    the apply script does, so an older change of that key (one still in the outbox, say) is
    refused instead of bringing the deleted item back."""

    kind: str  # config | flag
    service_name: str | None
    key: str
    version: int

    @property
    def field(self) -> str:
        return self.key if self.kind == "flag" else config_field(self.service_name, self.key)


@dataclass(frozen=True, slots=True)
class EnvironmentItems:
    """What a rebuild starts from: the live items of an environment and its tombstones."""

    configs: list[Item]
    flags: list[Item]
    tombstones: list[Tombstone]


# Retire an epoch whose data Redis lost in part: applies are refused until it is rebuilt.
_RETIRE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class NotBuilt(Exception):
    """The environment's read model is missing (never built, or Redis lost its data)."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    epoch: str
    revision: int
    configs: list[Item]
    flags: list[Item]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _items(flat: list[bytes]) -> list[Item]:
    return [orjson.loads(flat[i + 1]) for i in range(0, len(flat), 2)]


def _item_field(item: Item, kind: str) -> str:
    if kind == "config":
        return config_field(item.get("service_name"), item["config_key"])
    return str(item["flag_key"])


class RedisReadModel:
    def __init__(self, redis: Redis, keys: Keys, *, feed_length: int = 10_000) -> None:
        self.redis = redis
        self.keys = keys
        self.feed_length = feed_length
        self._apply = redis.register_script(_APPLY)
        self._snapshot = redis.register_script(_SNAPSHOT)
        self._finish = redis.register_script(_FINISH_REBUILD)
        self._retire = redis.register_script(_RETIRE)

    # -- writes ------------------------------------------------------------------------------

    async def apply(self, event: ChangeEvent) -> int:
        """Apply one change. Returns its feed revision, STALE (0) if Redis already holds this
        version or a newer one, NOT_BUILT (-1) if the environment has no read model, or
        DAMAGED (-2) if Redis lost part of it (the caller retires the epoch and rebuilds)."""
        k = self.keys.env(event.environment)
        if event.kind == "config":
            field, data = config_field(event.service_name, event.key), k.configs
        else:
            field, data = event.key, k.flags
        state = b"" if event.state is None else orjson.dumps(event.state)
        result = await self._apply(
            keys=[k.epoch, k.revision, data, k.versions, k.feed],
            args=[
                field,
                version_field(event.kind, field),
                event.version,
                state,
                orjson.dumps(event.to_dict()),
                self.feed_length,
                self.keys.channel,
                event.environment,
            ],
        )
        return int(result)

    async def rebuild(
        self,
        environment: str,
        configs: Iterable[Item],
        flags: Iterable[Item],
        *,
        tombstones: Iterable[Tombstone] = (),
        force: bool,
    ) -> str | None:
        """Replace the environment's read model with these items under a new epoch.

        Without `force`, only if the environment has no epoch (and returns None if another
        instance built it meanwhile). Items are staged under temporary keys and swapped in by
        one script, so readers never see a half-built model. Tombstones are staged before the
        items: a key deleted and then re-created keeps its (higher) live version.
        """
        k = self.keys.env(environment)
        staged = [k.staging(k.configs), k.staging(k.flags), k.staging(k.versions)]
        await self.redis.delete(*staged)
        deleted = {version_field(t.kind, t.field): t.version for t in tombstones}
        for start in range(0, len(deleted), 2000):
            chunk = dict(itertools.islice(deleted.items(), start, start + 2000))
            await self.redis.hset(staged[2], mapping=chunk)  # type: ignore[arg-type]
        for kind, items, target in (("config", configs, staged[0]), ("flag", flags, staged[1])):
            batch: dict[str, bytes] = {}
            versions: dict[str, int] = {}
            for item in items:
                field = _item_field(item, kind)
                batch[field] = orjson.dumps(item)
                versions[version_field(kind, field)] = int(item["version"])
                if len(batch) >= 2000:
                    await self._stage(target, staged[2], batch, versions)
                    batch, versions = {}, {}
            if batch:
                await self._stage(target, staged[2], batch, versions)
        epoch = uuid.uuid4().hex
        result = await self._finish(
            keys=[k.epoch, k.revision, k.configs, k.flags, k.versions, k.feed, *staged],
            args=[epoch, self.keys.channel, environment, "always" if force else "if-missing"],
        )
        if int(result) == NOT_BUILT:
            await self.redis.delete(*staged)
            return None
        return epoch

    async def _stage(
        self, data_key: str, versions_key: str, batch: dict[str, bytes], versions: dict[str, int]
    ) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(data_key, mapping=batch)  # type: ignore[arg-type]
            pipe.hset(versions_key, mapping=versions)  # type: ignore[arg-type]
            await pipe.execute()

    async def retire(self, environment: str, epoch: str) -> bool:
        """Drop the epoch if it is still `epoch`: Redis lost data it had acknowledged under it,
        so the model must be rebuilt from the database. Until then applies are refused (the
        changes wait in the outbox) and reads answer NotBuilt. False if it was already gone."""
        return bool(await self._retire(keys=[self.keys.env(environment).epoch], args=[epoch]))

    async def lock(self, environment: str, token: str, ttl_ms: int) -> bool:
        return bool(
            await self.redis.set(self.keys.env(environment).lock, token, nx=True, px=ttl_ms)
        )

    async def unlock(self, environment: str, token: str) -> None:
        key = self.keys.env(environment).lock
        if (await self.redis.get(key)) == token.encode():
            await self.redis.delete(key)

    # -- reads -------------------------------------------------------------------------------

    async def epoch(self, environment: str) -> str | None:
        value = await self.redis.get(self.keys.env(environment).epoch)
        return _text(value) if value else None

    async def revision(self, environment: str) -> int:
        return int(await self.redis.get(self.keys.env(environment).revision) or 0)

    async def position(self, environment: str) -> tuple[str | None, int]:
        """(epoch, revision) in one round trip: where the environment's feed stands."""
        k = self.keys.env(environment)
        epoch, revision = await self.redis.mget([k.epoch, k.revision])
        return (_text(epoch) if epoch else None), int(revision or 0)

    async def _hget(self, environment: str, data: str, *fields: str) -> list[Item | None]:
        """The items stored under these fields, in one round trip with the epoch check."""
        k = self.keys.env(environment)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(k.epoch)
            pipe.hmget(getattr(k, data), list(fields))
            built, values = await pipe.execute()
        if not built:
            raise NotBuilt(environment)
        return [orjson.loads(v) if v is not None else None for v in values]

    async def config_scopes(
        self, environment: str, service_name: str | None, key: str
    ) -> tuple[Item | None, Item | None]:
        """(the service's own item, the global item) for one key."""
        own, shared = await self._hget(
            environment, "configs", config_field(service_name, key), config_field(None, key)
        )
        return (own if service_name else None), shared

    async def flag(self, environment: str, key: str) -> Item | None:
        (item,) = await self._hget(environment, "flags", key)
        return item

    async def snapshot(self, environment: str) -> Snapshot:
        k = self.keys.env(environment)
        epoch, revision, configs, flags = await self._snapshot(
            keys=[k.epoch, k.revision, k.configs, k.flags]
        )
        if not epoch:
            raise NotBuilt(environment)
        return Snapshot(_text(epoch), int(revision), _items(configs), _items(flags))

    async def replay(self, environment: str, after: int, *, limit: int) -> list[FeedMessage] | None:
        """The feed's messages after revision `after`, or None when the stream no longer holds
        them all (trimmed, or another epoch): the caller must fall back to a snapshot."""
        k = self.keys.env(environment)
        async with self.redis.pipeline(transaction=True) as pipe:  # one consistent view
            pipe.get(k.revision)
            pipe.xrange(k.feed, min=f"{after + 1}-0", max="+", count=limit + 1)
            raw_current, entries = await pipe.execute()
        current = int(raw_current or 0)
        if len(entries) > limit or after > current:
            return None  # too many, or a cursor from the future: Redis lost what it names
        messages = [FeedMessage.parse(fields[b"m"]) for _id, fields in entries]
        expected = list(range(after + 1, current + 1))
        if [m.revision for m in messages if m.revision <= current] != expected:
            return None
        return messages
