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
    ) -> None:
        self.redis = redis  # a client of its own: its connection holds the subscription
        self.read_model = read_model
        self.replica = replica
        self.broadcaster = broadcaster
        self.environments = tuple(environments)
        self.ensure_built = ensure_built
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
            next_check = time.monotonic() + CHECK_EVERY_SECONDS
            while not stop.is_set():
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
                if message is not None and message["type"] == "message":
                    await self._deliver(FeedMessage.parse(message["data"]))
                if time.monotonic() >= next_check:
                    await self._check_epochs()
                    next_check = time.monotonic() + CHECK_EVERY_SECONDS

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

    async def _check_epochs(self) -> None:
        """Notice Redis losing its data (restart without persistence, flush) within a second."""
        for environment in self.environments:
            position = self._positions.get(environment)
            epoch = await self.read_model.epoch(environment)
            if position is None or epoch != position[0]:
                log.warning("read model of %s lost or replaced; resynchronising", environment)
                self.replica.distrust(environment)
                await self._catch_up(environment)
