"""Fan-out of feed messages to local SSE subscribers, each with a bounded queue.

A subscriber that cannot keep up is dropped (its queue is not allowed to grow): it reconnects and
resumes by cursor, so it loses nothing, and a slow client never costs the process unbounded memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict, deque
from collections.abc import Callable

from cache.messages import FeedMessage

log = logging.getLogger(__name__)


class Mailbox:
    """One subscriber's FIFO, for a single consumer: the part of asyncio.Queue a stream uses.

    An idle stream holds no buffer at all (asyncio.Queue keeps three deques of ~0.7 KiB each
    per instance, idle or not; per idle SSE connection that was the largest item Aurora
    added): the deque exists only while messages wait, and a future only while the consumer
    does. The bound is the subscriber's (`Subscriber.offer`).
    """

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[FeedMessage | None] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def empty(self) -> bool:
        return not self._items

    def clear(self) -> None:
        self._items = None

    def put_nowait(self, item: FeedMessage | None) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def get_nowait(self) -> FeedMessage | None:
        if not self._items:
            raise asyncio.QueueEmpty
        item = self._items.popleft()
        if not self._items:
            self._items = None  # idle again: let the buffer go
        return item

    async def get(self, wait_seconds: float | None = None) -> FeedMessage | None:
        """The next item; TimeoutError if none arrives within `wait_seconds`."""
        if not self._items:
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = None if wait_seconds is None else loop.call_later(wait_seconds, _expire, waiter)
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
            if not self._items:
                raise TimeoutError
        return self.get_nowait()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Subscriber:
    __slots__ = ("capacity", "closed", "environment", "owner", "queue", "service_name")

    def __init__(
        self, environment: str, service_name: str | None, capacity: int, owner: str | None = None
    ) -> None:
        self.environment = environment
        self.service_name = service_name
        self.owner = owner  # the hash of the API token that opened it (None: never re-checked)
        self.queue = Mailbox()
        self.capacity = capacity
        self.closed: str | None = None  # why the stream must end, once it must

    def wants(self, message: FeedMessage) -> bool:
        event = message.event
        # Flags and segments go to everyone; a configuration to its own service, or all if global.
        return (
            event is None
            or event.kind != "config"
            or event.service_name in (None, self.service_name)
        )

    def close(self, reason: str) -> None:
        """End the stream: drop what is queued (the client resumes by cursor) and wake it."""
        if self.closed is not None:
            return
        self.closed = reason
        self.queue.clear()
        self.queue.put_nowait(None)

    def offer(self, message: FeedMessage) -> bool:
        """Queue the message if wanted; False if the subscriber fell too far behind (dropped)."""
        if self.closed is not None or not self.wants(message):
            return True
        if self.queue.qsize() >= self.capacity:
            log.info(
                "dropping a slow SSE subscriber of %s at revision %d",
                self.environment,
                message.revision,
            )
            self.close("too slow")
            return False
        self.queue.put_nowait(message)
        return True


class Broadcaster:
    def __init__(self, capacity: int = 1000) -> None:
        self.capacity = capacity
        self._subscribers: dict[str, set[Subscriber]] = defaultdict(set)
        self.dropped = 0

    def subscribe(
        self, environment: str, service_name: str | None, owner: str | None = None
    ) -> Subscriber:
        subscriber = Subscriber(environment, service_name, self.capacity, owner)
        self._subscribers[environment].add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers[subscriber.environment].discard(subscriber)

    def publish(self, message: FeedMessage) -> None:
        for subscriber in tuple(self._subscribers.get(message.environment, ())):
            if not subscriber.offer(message):
                self.dropped += 1
                self.unsubscribe(subscriber)

    def close(self, reason: str, environment: str | None = None) -> None:
        """End the streams of one environment (or all): their clients reconnect by cursor."""
        for name, subscribers in self._subscribers.items():
            if environment is None or name == environment:
                for subscriber in subscribers:
                    subscriber.close(reason)
                subscribers.clear()

    def close_unless(self, allowed: Callable[[str, str], bool], reason: str) -> int:
        """End the streams whose owner may no longer read them, `allowed(owner, environment)`
        (the token was revoked, issue #9); how many were closed."""
        closed = 0
        for environment, subscribers in self._subscribers.items():
            for subscriber in list(subscribers):
                if subscriber.owner is not None and not allowed(subscriber.owner, environment):
                    subscriber.close(reason)
                    subscribers.discard(subscriber)
                    closed += 1
        return closed

    def counts(self) -> dict[str, int]:
        return {name: len(subs) for name, subs in self._subscribers.items() if subs}
