"""API token notices through Redis: revocations reach every live instance at once (issue #9).

A channel of its own (`<prefix>tokens`), never the change channel: these messages never reach
SSE subscribers and never take a revision of an environment's feed. Beside the channel, Redis
keeps a record of revoked token hashes (`<prefix>tokens:revoked`, a set), so an instance that
missed a message (its subscription was down) or cannot ask the database can still confirm its
tokens against Redis. Every instance re-seeds the record from the database when it holds less
(Redis restarted without its data).

Only hashes travel here, never a token's scopes: whoever can write to Redis can at most revoke
tokens or make instances reload from the database, never grant anything.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Literal

from redis.asyncio import Redis

from cache.subscription import keep_running, listen

log = logging.getLogger(__name__)

PING_EVERY_SECONDS = 1.0
# The subscription's connection answers a PING every second; silent this long, it is dead
# (a partition leaves a socket that neither errs nor delivers): cache/subscription.py.
SILENT_SECONDS = 3.0
PING = "aurora-tokens"


@dataclass(frozen=True, slots=True)
class TokenNotice:
    op: Literal["revoked", "created"]
    token_hash: str | None  # the revoked token's hash; None for a creation (reload to learn it)
    origin: str = ""  # the publisher: an instance skips its own notices

    def encode(self) -> str:
        data = {"op": self.op, "hash": self.token_hash, "origin": self.origin}
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def parse(cls, raw: str | bytes) -> TokenNotice | None:
        try:
            data = json.loads(raw)
            op, token_hash, origin = data["op"], data.get("hash"), str(data.get("origin", ""))
        except (ValueError, TypeError, KeyError, AttributeError):
            return None
        if op == "revoked" and isinstance(token_hash, str):
            return cls("revoked", token_hash, origin)
        if op == "created":
            return cls("created", None, origin)
        return None


class TokenNotices:
    """Publisher and subscriber of token notices, and the Redis record of revoked hashes."""

    def __init__(self, redis: Redis, prefix: str, *, subscriber: Redis | None = None) -> None:
        self.redis = redis  # commands
        # The subscription takes a connection of its own from this client's pool.
        self.subscriber = subscriber or redis
        self.origin = uuid.uuid4().hex
        self.channel = f"{prefix}tokens"
        self.revoked_key = f"{prefix}tokens:revoked"
        self.connected = asyncio.Event()
        self.ping_every = PING_EVERY_SECONDS
        self.silent_after = SILENT_SECONDS

    async def publish_revoked(self, token_hash: str) -> None:
        """Record the revocation, then tell every live instance (one MULTI: both or neither)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.sadd(self.revoked_key, token_hash)
            pipe.publish(self.channel, TokenNotice("revoked", token_hash, self.origin).encode())
            await pipe.execute()

    async def publish_created(self) -> None:
        await self.redis.publish(self.channel, TokenNotice("created", None, self.origin).encode())

    async def revoked(self) -> set[str]:
        """Every revoked hash Redis holds (tokens are few: one per service or person)."""
        members = await self.redis.smembers(self.revoked_key)
        return {m.decode() if isinstance(m, bytes) else str(m) for m in members}

    async def reseed(self, revoked: Iterable[str]) -> None:
        """Make the record hold at least the database's revoked hashes (Redis lost it?)."""
        hashes = list(revoked)
        if hashes and await self.redis.scard(self.revoked_key) < len(hashes):
            await self.redis.sadd(self.revoked_key, *hashes)
            log.info("token record re-seeded in Redis with %d revoked hashes", len(hashes))

    async def run(
        self,
        stop: asyncio.Event,
        deliver: Callable[[TokenNotice], None],
        connected: Callable[[], Awaitable[None]],
    ) -> None:
        """Keep the subscription alive until `stop` is set, reconnecting with jittered,
        bounded backoff. `connected` runs after each (re)subscription: what was published while
        the subscription was down is only in the record, so the caller reads it then."""
        await keep_running(
            stop,
            partial(self._session, stop, deliver, connected),
            what="token notices",
            after_each=self.connected.clear,
        )

    async def _session(
        self,
        stop: asyncio.Event,
        deliver: Callable[[TokenNotice], None],
        connected: Callable[[], Awaitable[None]],
    ) -> None:
        async with self.subscriber.pubsub() as pubsub:
            await pubsub.subscribe(self.channel)
            await connected()  # subscribed first, then caught up: nothing can slip between
            self.connected.set()
            async for message, _tick in listen(
                pubsub, stop, every=self.ping_every, silent_after=self.silent_after, ping=PING
            ):
                if message is None:
                    continue
                notice = TokenNotice.parse(message["data"])
                if notice is None:
                    log.warning("ignored a malformed token notice")
                elif notice.origin != self.origin:  # own changes are applied already
                    deliver(notice)
