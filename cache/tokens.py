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
import contextlib
import json
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

RECONNECT_BASE_SECONDS = 0.05
RECONNECT_CAP_SECONDS = 2.0
PING_EVERY_SECONDS = 1.0
# The subscription's connection answers a PING every second; silent this long, it is dead
# (a partition leaves a socket that neither errs nor delivers), as in cache/feed.py.
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


class SubscriptionSilent(ConnectionError):
    """The subscription's connection stopped answering: reconnect."""


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
        failures = 0
        while not stop.is_set():
            try:
                await self._session(stop, deliver, connected)
                failures = 0
            except (RedisError, OSError) as exc:
                failures += 1
                log.warning("token notices lost (%s: %s); reconnecting", type(exc).__name__, exc)
            except Exception:  # the subscription must outlive anything, or revocations wait
                failures += 1
                log.exception("token notices failed; reconnecting")
            finally:
                self.connected.clear()
            cap = min(RECONNECT_CAP_SECONDS, RECONNECT_BASE_SECONDS * 2**failures)
            delay = random.uniform(0, cap)  # noqa: S311 - jitter, not security
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)

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
            heard = time.monotonic()
            next_ping = heard + self.ping_every
            while not stop.is_set():
                message = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=min(0.5, self.ping_every)
                )
                now = time.monotonic()
                if message is not None:
                    heard = now  # any message, a PONG included, proves the connection
                    if message["type"] == "message":
                        notice = TokenNotice.parse(message["data"])
                        if notice is None:
                            log.warning("ignored a malformed token notice")
                        elif notice.origin != self.origin:  # own changes are applied already
                            deliver(notice)
                if now >= next_ping:
                    if now - heard > self.silent_after:
                        raise SubscriptionSilent(f"no answer for {now - heard:.1f}s")
                    await pubsub.ping(PING)
                    next_ping = now + self.ping_every
