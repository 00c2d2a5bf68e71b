"""The Redis read model: every configuration, flag and segment of an environment, kept current
by Lua.

Writes arrive as ChangeEvents (from the outbox) and are applied by one Lua script that, atomically:
(a) ignores the event unless its version is newer than the one Redis holds for that item (so
replayed or reordered events are harmless; versions survive deletes as tombstones), (b) updates the
read model, (c) assigns the next revision of the environment's feed and appends the message to a
bounded stream for replay, and (d) PUBLISHes it. No subscriber can see a change before it is
readable. An environment without an epoch key has not been built (or Redis lost its data): the
script refuses to apply to it, and reads refuse to answer from it, until it is rebuilt.

Every change also carries its number in the environment's committed sequence (kept by the
database per shard, database/repositories.py). The script records which numbers it has applied,
per shard a watermark below which all are in plus the few above it that arrived out of order
(`applied`: a hash whose field `_` says recording is on; `ahead`: a set of "shard:number"), so the
service
can prove Redis holds every change the database acknowledged (`applied`), whatever way Redis
came back from a fault (an older snapshot, a lagging replica promoted, an AOF that lost a second).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from aurora_client.events import ChangeEvent
from redis.asyncio import Redis

from cache.keys import Keys, config_field, version_field
from cache.messages import FeedMessage

Item = dict[str, Any]
T = TypeVar("T")

NOT_BUILT = -1
STALE = 0  # Redis already holds exactly this version: applied before (by a relay, say)
DAMAGED = -2
SUPERSEDED = -3  # Redis holds a newer version of the item: a later change is already in
LOST_LOCK = -4  # a rebuild whose lock was taken over: its staged data is discarded

# Every check comes before the first data write: Redis does not roll a script back, so a command
# failing half-way (XADD refusing an id below the stream's top, say) would leave a change readable
# but never published. A revision below the feed's newest entry means Redis lost keys of this
# environment (the counter evicted, a partial restore): the script retires the epoch itself, in
# the same atomic step (so no instance can retire a newer one), and answers DAMAGED; the caller
# rebuilds the read model as on a first start.
_APPLY = """
local epoch = redis.call('GET', KEYS[1])
if not epoch then return -1 end
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
local top = redis.call('XREVRANGE', KEYS[5], '+', '-', 'COUNT', 1)[1]
if top and tonumber(string.match(top[1], '^%d+')) > current then
  redis.call('DEL', KEYS[1])
  return -2
end
local seq = tonumber(ARGV[9])
local function note_applied()
  if seq <= 0 or not redis.call('HGET', KEYS[6], '_') then return end
  local shard = ARGV[10]
  local watermark = tonumber(redis.call('HGET', KEYS[6], shard) or '0')
  if seq <= watermark then return end
  redis.call('SADD', KEYS[7], string.format('%s:%d', shard, seq))
  local run = watermark
  while redis.call('SISMEMBER', KEYS[7], string.format('%s:%d', shard, run + 1)) == 1 do
    run = run + 1
    redis.call('SREM', KEYS[7], string.format('%s:%d', shard, run))
  end
  if run > watermark then redis.call('HSET', KEYS[6], shard, run) end
end
local version = tonumber(ARGV[3])
local held = tonumber(redis.call('HGET', KEYS[4], ARGV[2]) or '0')
if held >= version then
  note_applied()
  if held == version then return 0 end
  return -3
end
redis.call('HSET', KEYS[4], ARGV[2], version)
if ARGV[4] == '' then
  redis.call('HDEL', KEYS[3], ARGV[1])
else
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
end
note_applied()
local rev = redis.call('INCR', KEYS[2])
local msg = '{"environment":"' .. ARGV[8] .. '","epoch":"' .. epoch .. '","revision":' .. rev ..
  ',"event":' .. ARGV[5] .. '}'
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[6], rev .. '-0', 'm', msg)
redis.call('PUBLISH', ARGV[7], msg)
return rev
"""

_SNAPSHOT = """
return {redis.call('GET', KEYS[1]) or '', redis.call('GET', KEYS[2]) or '0',
        redis.call('HGETALL', KEYS[3]), redis.call('HGETALL', KEYS[4]),
        redis.call('HGETALL', KEYS[5]), redis.call('HGETALL', KEYS[6])}
"""

# Swap the staged hashes in, start a new epoch, drop the old epoch's feed, tell subscribers.
# Refuses (-1) if another rebuild already set an epoch meanwhile, and (-4) if this builder no
# longer holds the lock (it stalled past its TTL and another took over: the fencing token). The
# applied watermarks become the database sequence (per shard) the staged items were read at.
# KEYS: epoch, rev, the live configs, flags, segments and versions, feed, the same four staged,
# lock, applied, ahead.
_FINISH_REBUILD = """
if redis.call('GET', KEYS[12]) ~= ARGV[5] then return -4 end
if redis.call('EXISTS', KEYS[1]) == 1 and ARGV[4] == 'if-missing' then return -1 end
for i = 0, 3 do
  local staged, live = KEYS[8 + i], KEYS[3 + i]
  if redis.call('EXISTS', staged) == 1 then
    redis.call('RENAME', staged, live)
    redis.call('PERSIST', live)
  else
    redis.call('DEL', live)
  end
end
redis.call('DEL', KEYS[7], KEYS[13], KEYS[14])
redis.call('HSET', KEYS[13], '_', '1')
for i = 6, #ARGV, 2 do redis.call('HSET', KEYS[13], ARGV[i], ARGV[i + 1]) end
redis.call('SET', KEYS[1], ARGV[1])
local rev = tonumber(redis.call('GET', KEYS[2]) or '0')
redis.call('SET', KEYS[2], rev)
redis.call('PUBLISH', ARGV[2], '{"environment":"' .. ARGV[3] .. '","epoch":"' .. ARGV[1] ..
  '","revision":' .. rev .. ',"event":null}')
return rev
"""

# The rebuild lock, held with a fencing token: extended only, and released only, by its holder.
_EXTEND_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
STAGING_TTL_MS = 600_000  # what a builder that died mid-build staged does not stay for ever


@dataclass(frozen=True, slots=True)
class Tombstone:
    """The version at which a key was last deleted. A rebuild keeps it in the versions hash, as
    the apply script does, so an older change of that key (one still in the outbox, say) is
    refused instead of bringing the deleted item back."""

    kind: str  # config | flag | segment
    service_name: str | None
    key: str  # a segment's name
    version: int

    @property
    def field(self) -> str:
        return config_field(self.service_name, self.key) if self.kind == "config" else self.key


@dataclass(frozen=True, slots=True)
class EnvironmentItems:
    """What a rebuild starts from: the live items of an environment and its tombstones, read in
    one transaction with the committed sequence ({shard: number}) they reflect."""

    configs: list[Item]
    flags: list[Item]
    tombstones: list[Tombstone]
    sequence: dict[int, int] = field(default_factory=dict)
    segments: list[Item] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Applied:
    """Which of the environment's committed changes the read model holds: per shard, every
    number up to its watermark (None: the model predates sequence tracking, so nothing is
    provable), and `ahead`, the (shard, number) applied above a watermark, out of order."""

    epoch: str | None
    watermarks: dict[int, int] | None
    ahead: frozenset[tuple[int, int]]

    def missing(self, committed: dict[int, int], waiting: Iterable[tuple[int, int]]) -> int:
        """How many committed changes are in neither the read model nor `waiting` (the outbox):
        acknowledged changes that Redis lost. -1 when Redis records more than the database
        committed in some shard (the database went back), which is a loss too."""
        assert self.watermarks is not None
        if any(mark > committed.get(shard, 0) for shard, mark in self.watermarks.items()):
            return -1
        covered = set(self.ahead) | set(waiting)
        lost = 0
        for shard, last in committed.items():
            mark = self.watermarks.get(shard, 0)
            held = sum(1 for s, n in covered if s == shard and mark < n <= last)
            lost += last - mark - held
        return lost


# Retire an epoch whose data Redis lost in part: applies are refused until it is rebuilt.
_RETIRE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class NotBuilt(Exception):
    """The environment's read model is missing (never built, or Redis lost its data)."""


class LostLock(Exception):
    """A rebuild outlived its lock (another builder took over): nothing of it was swapped in."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    epoch: str
    revision: int
    configs: list[Item]
    flags: list[Item]
    # Every version Redis holds, tombstones of deleted keys included ("c|svc|key" -> 3): a
    # replica hydrated from it refuses an older change of a deleted key as the script does.
    versions: dict[str, int] = field(default_factory=dict)
    segments: list[Item] = field(default_factory=list)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _items(flat: list[bytes]) -> list[Item]:
    return [orjson.loads(flat[i + 1]) for i in range(0, len(flat), 2)]


def _chunks(pairs: Iterable[tuple[str, T]], size: int = 2000) -> Iterator[dict[str, T]]:
    """Pairs in dicts of at most `size`: one pipeline each while staging a rebuild."""
    chunk: dict[str, T] = {}
    for key, value in pairs:
        chunk[key] = value
        if len(chunk) >= size:
            yield chunk
            chunk = {}
    if chunk:
        yield chunk


def _item_field(item: Item, kind: str) -> str:
    if kind == "config":
        return config_field(item.get("service_name"), item["config_key"])
    return str(item["flag_key"] if kind == "flag" else item["name"])


class RedisReadModel:
    def __init__(self, redis: Redis, keys: Keys, *, feed_length: int = 10_000) -> None:
        self.redis = redis
        self.keys = keys
        self.feed_length = feed_length
        self._apply = redis.register_script(_APPLY)
        self._snapshot = redis.register_script(_SNAPSHOT)
        self._finish = redis.register_script(_FINISH_REBUILD)
        self._retire = redis.register_script(_RETIRE)
        self._extend = redis.register_script(_EXTEND_LOCK)
        self._unlock = redis.register_script(_UNLOCK)

    # -- writes ------------------------------------------------------------------------------

    async def apply(self, event: ChangeEvent, sequence: int = 0, shard: int = 0) -> int:
        """Apply one change, numbered `sequence` in `shard` of its environment's committed
        sequence (0: unnumbered). Returns its feed revision, STALE (0) if Redis already holds
        this version, SUPERSEDED (-3) if it holds a newer one, NOT_BUILT (-1) if the environment
        has no read model, or DAMAGED (-2) if Redis lost part of it (the epoch is retired: the
        caller rebuilds). STALE and SUPERSEDED still record the sequence number as applied."""
        k = self.keys.env(event.environment)
        field, data = self._field(event), k.data(event.kind)
        state = b"" if event.state is None else orjson.dumps(event.state)
        result = await self._apply(
            keys=[k.epoch, k.revision, data, k.versions, k.feed, k.applied, k.ahead],
            args=[
                field,
                version_field(event.kind, field),
                event.version,
                state,
                orjson.dumps(event.to_dict()),
                self.feed_length,
                self.keys.channel,
                event.environment,
                sequence,
                shard,
            ],
        )
        return int(result)

    @staticmethod
    def _field(event: ChangeEvent) -> str:
        if event.kind == "config":
            return config_field(event.service_name, event.key)
        return event.key

    async def rebuild(
        self,
        environment: str,
        items: EnvironmentItems,
        *,
        token: str,
        force: bool = False,
    ) -> str | None:
        """Replace the environment's read model with these items under a new epoch.

        The caller holds the rebuild lock under `token`: the swap happens only if it still does
        (else LostLock). Without `force`, only if the environment has no epoch (and returns None
        if another instance built it meanwhile). Items are staged under keys of this builder's
        own and swapped in by one script, so readers never see a half-built model. Tombstones
        are staged before the items: a key deleted and then re-created keeps its (higher) live
        version.
        """
        k = self.keys.env(environment)
        live = [k.configs, k.flags, k.segments, k.versions]
        staged = [k.staging(name, token) for name in live]
        await self.redis.delete(*staged)
        for chunk in _chunks((version_field(t.kind, t.field), t.version) for t in items.tombstones):
            await self._stage(None, staged, {}, chunk)
        for kind, rows, target in (
            ("config", items.configs, staged[0]),
            ("flag", items.flags, staged[1]),
            ("segment", items.segments, staged[2]),
        ):
            for batch in _chunks((_item_field(item, kind), item) for item in rows):
                await self._stage(
                    target,
                    staged,
                    {field: orjson.dumps(item) for field, item in batch.items()},
                    {version_field(kind, field): int(i["version"]) for field, i in batch.items()},
                )
        epoch = uuid.uuid4().hex
        result = int(
            await self._finish(
                keys=[k.epoch, k.revision, *live, k.feed, *staged, k.lock, k.applied, k.ahead],
                args=[
                    epoch,
                    self.keys.channel,
                    environment,
                    "always" if force else "if-missing",
                    token,
                    *(part for pair in sorted(items.sequence.items()) for part in pair),
                ],
            )
        )
        if result < 0:
            await self.redis.delete(*staged)
            if result == LOST_LOCK:
                raise LostLock(environment)
            return None
        return epoch

    async def _stage(
        self,
        data_key: str | None,
        staged: list[str],
        batch: dict[str, bytes],
        versions: dict[str, int],
    ) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            if data_key is not None:
                pipe.hset(data_key, mapping=batch)  # type: ignore[arg-type]
            pipe.hset(staged[-1], mapping=versions)  # type: ignore[arg-type]
            for key in staged:
                pipe.pexpire(key, STAGING_TTL_MS)
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

    async def extend_lock(self, environment: str, token: str, ttl_ms: int) -> bool:
        """Keep holding the rebuild lock; False if it expired and another builder has it."""
        return bool(
            await self._extend(keys=[self.keys.env(environment).lock], args=[token, ttl_ms])
        )

    async def unlock(self, environment: str, token: str) -> None:
        """Release the lock if this token still holds it (one atomic compare-and-delete)."""
        await self._unlock(keys=[self.keys.env(environment).lock], args=[token])

    async def lock_holder(self, environment: str) -> str | None:
        value = await self.redis.get(self.keys.env(environment).lock)
        return _text(value) if value else None

    # -- reads -------------------------------------------------------------------------------

    async def applied(self, environment: str) -> Applied:
        """Which committed changes the read model holds (see Applied), in one round trip."""
        k = self.keys.env(environment)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.get(k.epoch)
            pipe.hgetall(k.applied)
            pipe.smembers(k.ahead)
            epoch, marks, ahead = await pipe.execute()
        watermarks = {_text(f): int(v) for f, v in marks.items()}
        recorded = watermarks.pop("_", None) is not None
        pairs = (_text(member).split(":") for member in ahead)
        return Applied(
            _text(epoch) if epoch else None,
            {int(shard): mark for shard, mark in watermarks.items()} if recorded else None,
            frozenset((int(shard), int(number)) for shard, number in pairs),
        )

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

    async def segment(self, environment: str, name: str) -> Item | None:
        (item,) = await self._hget(environment, "segments", name)
        return item

    async def targeting(self, environment: str) -> tuple[list[Item], list[Item]]:
        """Every flag and every segment of the environment (what evaluating a targeted flag may
        need: its prerequisites' flags and its rules' segments), in one round trip."""
        k = self.keys.env(environment)
        async with self.redis.pipeline(transaction=True) as pipe:  # one consistent view
            pipe.exists(k.epoch)
            pipe.hvals(k.flags)
            pipe.hvals(k.segments)
            built, flags, segments = await pipe.execute()
        if not built:
            raise NotBuilt(environment)
        return [orjson.loads(v) for v in flags], [orjson.loads(v) for v in segments]

    async def snapshot(self, environment: str) -> Snapshot:
        k = self.keys.env(environment)
        epoch, revision, configs, flags, segments, versions = await self._snapshot(
            keys=[k.epoch, k.revision, k.configs, k.flags, k.segments, k.versions]
        )
        if not epoch:
            raise NotBuilt(environment)
        held = {_text(versions[i]): int(versions[i + 1]) for i in range(0, len(versions), 2)}
        return Snapshot(
            _text(epoch), int(revision), _items(configs), _items(flags), held, _items(segments)
        )

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
