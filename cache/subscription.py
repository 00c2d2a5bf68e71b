"""A Redis subscription kept alive: the loop both the change feed and the token notices run.

A subscription's socket can die without an error (a partition, a dropped NAT entry): it neither
errs nor delivers. So the connection is PINGed every `every` seconds, and silence (no message,
not even a PONG) for `silent_after` seconds raises SubscriptionSilent. A session that ends for
any reason is started again with full-jitter backoff, bounded, until `stop` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

RECONNECT_BASE_SECONDS = 0.05
RECONNECT_CAP_SECONDS = 2.0


class SubscriptionSilent(ConnectionError):
    """The subscription's connection stopped answering: reconnect."""


async def listen(
    pubsub: PubSub, stop: asyncio.Event, *, every: float, silent_after: float, ping: str
) -> AsyncIterator[tuple[dict[str, Any] | None, bool]]:
    """Yield (a published message or None, whether this is a tick) at least twice a second,
    until `stop`. On each tick (every `every` seconds) the connection was PINGed; it raises
    SubscriptionSilent once nothing has been heard for `silent_after` seconds."""
    heard = time.monotonic()
    next_tick = heard + every
    while not stop.is_set():
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=min(0.5, every))
        now = time.monotonic()
        if message is not None:
            heard = now  # any message, a PONG included, proves the connection
        tick = now >= next_tick
        if tick:
            if now - heard > silent_after:
                raise SubscriptionSilent(f"no answer for {now - heard:.1f}s")
            await pubsub.ping(ping)
            next_tick = now + every
        published = message if message is not None and message["type"] == "message" else None
        yield published, tick


async def keep_running(
    stop: asyncio.Event,
    session: Callable[[], Awaitable[None]],
    *,
    what: str,
    after_each: Callable[[], None],
    expected: tuple[type[BaseException], ...] = (RedisError, OSError),
) -> None:
    """Run `session` again and again until `stop`, with jittered backoff between failures.
    `after_each` runs whenever a session ends. An unexpected error is logged with its traceback
    but ends nothing: without its subscription an instance would never be fresh again."""
    failures = 0
    while not stop.is_set():
        try:
            await session()
            failures = 0
        except expected as exc:
            failures += 1
            log.warning("%s lost (%s: %s); reconnecting", what, type(exc).__name__, exc)
        except Exception:
            failures += 1
            log.exception("%s failed; reconnecting", what)
        finally:
            after_each()
        cap = min(RECONNECT_CAP_SECONDS, RECONNECT_BASE_SECONDS * 2**failures)
        delay = random.uniform(0, cap)  # noqa: S311 - jitter, not security
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
