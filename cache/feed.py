"""The change feed: one Redis subscription per process, sequenced per environment.

Every message carries its environment's (epoch, revision). The feed hands messages to the replica
and the broadcaster strictly in revision order: a gap (a lost or late message, a reconnect) is
filled from the Redis stream; when the stream cannot fill it, or the epoch changed (the read model
was rebuilt), the replica is re-hydrated from a snapshot and local SSE streams of that environment
are closed so their clients resynchronise by cursor. While the subscription is down, the replica
is untrusted (reads go to Redis) and local streams are closed (clients reconnect elsewhere).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError

from cache.broadcaster import Broadcaster
from cache.messages import FeedMessage
from cache.read_model import NotBuilt, RedisReadModel
from cache.replica import Replica

log = logging.getLogger(__name__)

RECONNECT_BASE_SECONDS = 0.05
RECONNECT_CAP_SECONDS = 2.0
CHECK_EVERY_SECONDS = 1.0
REPLAY_LIMIT = 5000
# The subscription's connection answers a PING every check; silent this long, it is dead (a
# network partition or a dropped NAT entry leaves a socket that neither errs nor delivers).
SILENT_SECONDS = 3.0
# Redis ahead of what the subscription brought for this long: fetch the gap from the stream.
BEHIND_SECONDS = 1.0
PING = "aurora-feed"


class SubscriptionSilent(ConnectionError):
    """The subscription's connection stopped answering: reconnect."""


class ChangeFeed:
    def __init__(
        self,
        redis: Redis,
        read_model: RedisReadModel,
        replica: Replica,
        broadcaster: Broadcaster,
        environments: Sequence[str],
        *,
        ensure_built: Callable[[str], Awaitable[None]],
        rebuild_lost: Callable[[str, str], Awaitable[None]],
    ) -> None:
        self.redis = redis  # a client of its own: its connection holds the subscription
        self.read_model = read_model
        self.replica = replica
        self.broadcaster = broadcaster
        self.environments = tuple(environments)
        self.ensure_built = ensure_built
        self.rebuild_lost = rebuild_lost
        self._behind_since: dict[str, float] = {}  # when Redis got ahead of the feed
        self.check_every = CHECK_EVERY_SECONDS
        self.silent_after = SILENT_SECONDS
        self.behind_grace = BEHIND_SECONDS
        self.connected = asyncio.Event()
        self._positions: dict[str, tuple[str, int]] = {}  # last (epoch, revision) handed on
        self.resyncs = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Keep the subscription alive until `stop` is set, reconnecting with jittered backoff."""
        failures = 0
        while not stop.is_set():
            try:
                await self._session(stop)
                failures = 0
            except (RedisError, OSError, NotBuilt) as exc:
                failures += 1
                log.warning("change feed lost (%s: %s); reconnecting", type(exc).__name__, exc)
            except Exception:
                # Anything else (the database down during a rebuild, say) must not end the feed
                # for good: without it this instance never trusts its replica or streams again.
                failures += 1
                log.exception("change feed failed; reconnecting")
            finally:
                self._lost()
            cap = min(RECONNECT_CAP_SECONDS, RECONNECT_BASE_SECONDS * 2**failures)
            delay = random.uniform(0, cap)  # noqa: S311 - jitter, not security
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)

    def _lost(self) -> None:
        if self.connected.is_set():
            log.info("change feed disconnected: replica untrusted, local streams closed")
        self.connected.clear()
        self.replica.distrust()
        self.broadcaster.close("this instance lost its change feed")

    async def _session(self, stop: asyncio.Event) -> None:
        async with self.redis.pubsub() as pubsub:
            await pubsub.subscribe(self.read_model.keys.channel)
            # Subscribed first, then caught up: nothing published from here on can be missed.
            for environment in self.environments:
                await self._catch_up(environment)
            self.connected.set()
            log.info("change feed live: %s", self.replica.status())
            heard = time.monotonic()
            next_check = heard + self.check_every
            while not stop.is_set():
                message = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=min(0.5, self.check_every)
                )
                now = time.monotonic()
                if message is not None:
                    heard = now  # any message, a PONG included, proves the connection
                    if message["type"] == "message":
                        await self._deliver(FeedMessage.parse(message["data"]))
                if now >= next_check:
                    if now - heard > self.silent_after:
                        raise SubscriptionSilent(f"no answer for {now - heard:.1f}s")
                    await pubsub.ping(PING)
                    await self._check_positions()
                    next_check = time.monotonic() + self.check_every

    async def _deliver(self, message: FeedMessage) -> None:
        position = self._positions.get(message.environment)
        if position is None:
            return  # an environment this instance does not serve
        epoch, revision = position
        if message.epoch == epoch and message.revision <= revision:
            return  # already handed on (a replayed or duplicate message)
        if message.epoch == epoch and message.revision == revision + 1:
            self._hand_on(message)
        else:
            await self._catch_up(message.environment)  # a gap, or a new epoch

    def _hand_on(self, message: FeedMessage) -> None:
        """The next message in sequence: to the replica, then to local streams."""
        self._positions[message.environment] = (message.epoch, message.revision)
        self.replica.follow(message)
        self.broadcaster.publish(message)

    async def _catch_up(self, environment: str) -> None:
        """Bring the replica and local streams to Redis's current revision: by replaying the
        missed messages when the stream still holds them, else from a snapshot."""
        position = self._positions.get(environment)
        epoch = await self.read_model.epoch(environment)
        if epoch is None:
            await self.ensure_built(environment)
            epoch = await self.read_model.epoch(environment)
        if position is not None and position[0] == epoch:
            missed = await self.read_model.replay(environment, position[1], limit=REPLAY_LIMIT)
            if missed is not None:
                for message in missed:
                    if message.epoch == epoch and message.revision > position[1]:
                        self._hand_on(message)
                self.replica.trust(environment)
                return
        snapshot = await self.read_model.snapshot(environment)
        self.replica.hydrate(environment, snapshot)
        self._positions[environment] = (snapshot.epoch, snapshot.revision)
        self.resyncs += 1
        if position is not None:
            # Local streams may have missed what the snapshot covers: they resynchronise.
            self.broadcaster.close("the read model was rebuilt; resynchronise", environment)

    async def _check_positions(self) -> None:
        """Compare each environment's feed in Redis with what this instance handed on, once a
        second: notice Redis losing its data (no epoch, or another one), going back in time
        (a lower revision: restored from an older snapshot, or a failover that dropped writes),
        and messages the subscription did not bring (Redis ahead for too long)."""
        for environment in self.environments:
            position = self._positions.get(environment)
            epoch, revision = await self.read_model.position(environment)
            if position is None or epoch != position[0]:
                log.warning("read model of %s lost or replaced; resynchronising", environment)
                self._behind_since.pop(environment, None)
                self.replica.distrust(environment)
                await self._catch_up(environment)
            elif revision < position[1]:
                log.warning(
                    "read model of %s went back from revision %d to %d; rebuilding",
                    environment,
                    position[1],
                    revision,
                )
                self._behind_since.pop(environment, None)
                self.replica.distrust(environment)
                await self.rebuild_lost(environment, position[0])
                await self._catch_up(environment)
            elif revision > position[1]:
                since = self._behind_since.setdefault(environment, time.monotonic())
                if time.monotonic() - since >= self.behind_grace:
                    log.warning(
                        "the subscription did not bring revisions %d..%d of %s; replaying them",
                        position[1] + 1,
                        revision,
                        environment,
                    )
                    del self._behind_since[environment]
                    await self._catch_up(environment)
            else:
                self._behind_since.pop(environment, None)
