"""One subscriber's stream of the change feed: a snapshot or an exact replay, then live changes.

Plain asyncio (the router wraps it in sse-starlette). The subscriber is registered with the
broadcaster in the same synchronous step that reads the replica's position, so every change after
that position reaches its queue; anything at or below what was already sent is skipped. That is
what makes a reconnect with Last-Event-ID gap-free and duplicate-free. A resumed stream ends its
replay with a `heartbeat`, so a client that missed nothing learns at once that its resume worked
(it has no other event to go by until the next change).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import orjson
from aurora_client.events import Cursor
from redis.exceptions import RedisError

from cache.broadcaster import Broadcaster, Subscriber
from cache.read_model import RedisReadModel
from cache.replica import EnvironmentCopy, Replica

REPLAY_LIMIT = 5000


class StreamUnavailable(Exception):
    """This instance cannot serve a live stream now (its change feed is down)."""


class CursorAhead(StreamUnavailable):
    """The client's cursor names a revision of the current epoch that Redis does not have: Redis
    may have lost changes the client saw (restored from an older snapshot, a failover to a
    lagging replica). Never answered with a snapshot of older data: the read model is proven
    against the database first, and while that fails (a loss found and being rebuilt under a
    new epoch, or the database silent) the client stays stale and retries; after the rebuild its
    old cursor gets a snapshot of the repaired data."""


@dataclass(frozen=True, slots=True)
class StreamEvent:
    event: str  # snapshot | upsert | delete | heartbeat
    id: str | None  # the cursor; None for a heartbeat (it must not move the client's position)
    data: str


def heartbeat_event(cursor: str | None, heartbeat_seconds: float) -> StreamEvent:
    """The periodic keep-alive, also sent once right after a resume's replay."""
    data = {"cursor": cursor, "heartbeat_seconds": heartbeat_seconds}
    return StreamEvent("heartbeat", None, orjson.dumps(data).decode())


def snapshot_event(
    copy: EnvironmentCopy, environment: str, service_name: str | None, heartbeat_seconds: float
) -> StreamEvent:
    cursor = str(Cursor(copy.epoch, copy.revision))
    configs = [
        item
        for item in copy.configs.values()
        if item.get("service_name") is None or item.get("service_name") == service_name
    ]
    data = {
        "cursor": cursor,
        "environment": environment,
        "service_name": service_name,
        "configs": configs,
        "flags": list(copy.flags.values()),
        "segments": list(copy.segments.values()),
        # Clients treat a stream silent for two of these as stale.
        "heartbeat_seconds": heartbeat_seconds,
    }
    return StreamEvent("snapshot", cursor, orjson.dumps(data).decode())


class Streams:
    def __init__(
        self,
        read_model: RedisReadModel,
        replica: Replica,
        broadcaster: Broadcaster,
        *,
        heartbeat_seconds: float,
        prove: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        self.read_model = read_model
        self.replica = replica
        self.broadcaster = broadcaster
        self.heartbeat_seconds = heartbeat_seconds
        self.prove = prove  # the feed's proof of the read model against the database

    async def open(
        self,
        environment: str,
        service_name: str | None,
        last_event_id: str | None,
        owner: str | None = None,
    ) -> ChangeStream:
        """`owner`: the hash of the API token that opens the stream, so that the stream can be
        closed once the token is revoked (Broadcaster.close_unless)."""
        copy = self.replica.copy(environment)
        if copy is None:
            raise StreamUnavailable(environment)
        resume = Cursor.parse(last_event_id or "")
        if resume is not None and resume.epoch == copy.epoch and resume.revision > copy.revision:
            # Ahead of this replica: another instance may just be a little further along, or
            # Redis lost what the client saw. Only Redis can say which.
            try:
                head = await self.read_model.revision(environment)
            except (RedisError, OSError) as exc:
                raise StreamUnavailable(environment) from exc
            # Redis may have lost what the client saw: a snapshot is only right once the read
            # model is proven to hold every acknowledged change (else it is being rebuilt).
            if resume.revision > head and (self.prove is None or not await self.prove(environment)):
                raise CursorAhead(environment)
            if self.replica.copy(environment) is None:
                raise StreamUnavailable(environment)
        subscriber = self.broadcaster.subscribe(environment, service_name, owner)
        return ChangeStream(self, subscriber, resume)


class ChangeStream:
    def __init__(self, streams: Streams, subscriber: Subscriber, resume: Cursor | None) -> None:
        self._streams = streams
        self.subscriber = subscriber
        self._resume = resume

    def close(self) -> None:
        self._streams.broadcaster.unsubscribe(self.subscriber)

    def heartbeat(self) -> StreamEvent:
        """Keeps an idle stream observable; carries the replica's cursor but no `id:`."""
        position = self._streams.replica.position(self.subscriber.environment)
        cursor = str(Cursor(*position)) if position else None
        return heartbeat_event(cursor, self._streams.heartbeat_seconds)

    async def events(self) -> AsyncIterator[StreamEvent]:
        """Yields until the subscriber is closed (too slow, resync, shutdown, feed lost), and a
        heartbeat whenever nothing was sent for `heartbeat_seconds`. Heartbeats come from here,
        not from sse-starlette's ping task: one task fewer per connection (~3 KiB idle)."""
        sub = self.subscriber
        try:
            first, epoch, last = await self._start()
            for event in first:
                yield event
            while True:
                try:
                    message = await sub.queue.get(self._streams.heartbeat_seconds)
                except TimeoutError:
                    yield self.heartbeat()
                    continue
                if message is None or message.event is None or message.epoch != epoch:
                    return  # closed, or the read model was rebuilt: reconnect and resync
                if message.revision <= last:
                    continue  # already sent by the replay
                last = message.revision
                yield StreamEvent(message.event.op, str(message.cursor), message.event_json)
        finally:
            self.close()

    async def _start(self) -> tuple[list[StreamEvent], str, int]:
        """What to send first (exactly the missed events, else a snapshot), the epoch, and the
        last revision that covers. Live messages queued meanwhile above it follow without gap."""
        streams, sub = self._streams, self.subscriber
        copy = streams.replica.copy(sub.environment)
        if copy is None:
            raise StreamUnavailable(sub.environment)
        resume = self._resume
        if resume is not None and resume.epoch == copy.epoch:
            epoch = copy.epoch
            missed = await streams.read_model.replay(
                sub.environment, resume.revision, limit=REPLAY_LIMIT
            )
            if missed is not None and all(m.epoch == epoch for m in missed):
                last = max([resume.revision, *(m.revision for m in missed)])
                replayed = [
                    StreamEvent(m.event.op, str(m.cursor), m.event_json)
                    for m in missed
                    if m.event is not None and sub.wants(m)
                ]
                confirm = heartbeat_event(str(Cursor(epoch, last)), streams.heartbeat_seconds)
                return [*replayed, confirm], epoch, last
            copy = streams.replica.copy(sub.environment)  # the stream cannot fill the gap
            if copy is None:
                raise StreamUnavailable(sub.environment)
        snapshot = snapshot_event(
            copy, sub.environment, sub.service_name, streams.heartbeat_seconds
        )
        return [snapshot], copy.epoch, copy.revision
