"""A verification the feed cancelled, but whose cancellation was lost, trusts nothing.

The feed stops a verification by cancelling it: when the subscription drops (its answer must not
make a replica trusted any more) and when a newer job replaces it (its answer is outdated). A
cancellation can be lost: redis-py sends a command under `asyncio.wait_for`, which on Python 3.11
returns the reply and drops a cancellation that lands just as it completes (python/cpython#86296,
see tests/integration/test_build_liveness.py), and the job runs on. Its late answer must not make
the replica trusted: a client would be served as fresh what nobody proved fresh.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from fakeredis import FakeAsyncRedis, FakeServer
from redis.exceptions import ConnectionError as RedisConnectionError

from cache.broadcaster import Broadcaster
from cache.feed import ChangeFeed
from cache.keys import Keys
from cache.read_model import RedisReadModel
from cache.replica import Replica
from tests.readmodels import build
from tests.unit.test_feed import running, until

ENV = "production"
DEADLINE = 5.0
pytestmark = pytest.mark.anyio


class Proofs:
    """The database's side of the proof. The first proof answers only once `release` is set, and
    answers even if cancelled meanwhile (the cancellation is lost); every later proof is pending
    until cancelled, so only the first one can ever make the replica trusted."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.first_asked = asyncio.Event()
        self.first: asyncio.Task[Any] | None = None  # the job that asked first
        self.cancellations_lost = 0
        self.later = 0

    async def ensure_built(self, environment: str) -> None:
        raise AssertionError("built by the test")

    async def rebuild_lost(self, environment: str, epoch: str, cause: str) -> None:
        raise AssertionError("nothing is lost")

    async def verify(self, environment: str) -> tuple[str, str] | None:
        if self.first is not None:
            self.later += 1
            await asyncio.Event().wait()  # pending for ever, cancelled as asked
        self.first = asyncio.current_task()
        self.first_asked.set()
        reply = asyncio.ensure_future(self.release.wait())
        while not reply.done():
            try:
                await asyncio.shield(reply)
            except asyncio.CancelledError:
                self.cancellations_lost += 1  # the reply comes all the same
        return None  # every acknowledged change is there


class Rig:
    def __init__(self) -> None:
        server = FakeServer()
        self.redis, self.feed_redis = FakeAsyncRedis(server=server), FakeAsyncRedis(server=server)
        self.model = RedisReadModel(self.redis, Keys("t:"), feed_length=100)
        self.replica = Replica()
        self.proofs = Proofs()
        self.feed = ChangeFeed(
            self.feed_redis,
            self.model,
            self.replica,
            Broadcaster(100),
            [ENV],
            maintainer=self.proofs,
        )
        self.feed.check_every, self.feed.silent_after = 0.05, 5.0
        self.sessions = 0
        self.drop = asyncio.Event()  # set: the first subscription's connection breaks
        original = self.feed_redis.pubsub

        def pubsub(**kwargs: Any) -> Any:
            self.sessions += 1
            subscription = original(**kwargs)
            if self.sessions == 1:
                subscription.get_message = self._breaking(subscription.get_message)
            return subscription

        self.feed_redis.pubsub = pubsub  # type: ignore[method-assign]

    def _breaking(
        self, get_message: Callable[..., Awaitable[Any]]
    ) -> Callable[..., Awaitable[Any]]:
        async def breaking(**kwargs: Any) -> Any:
            if self.drop.is_set():
                raise RedisConnectionError("Connection reset by peer")
            return await get_message(**kwargs)

        return breaking

    async def first_proof_answered(self) -> None:
        """Let the first proof answer, and wait until its job has ended."""
        job = self.proofs.first
        assert job is not None
        self.proofs.release.set()
        done, _ = await asyncio.wait({job}, timeout=DEADLINE)
        assert done, "the first verification never ended"
        assert self.proofs.cancellations_lost >= 1  # the premise: it was cancelled, and ran on


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    rig = Rig()
    await build(rig.model, ENV)  # as another instance left it: trusted only once proven
    yield rig
    await rig.redis.aclose()
    await rig.feed_redis.aclose()


async def test_a_proof_answered_after_the_subscription_dropped_trusts_nothing(rig: Rig) -> None:
    async with running(rig.feed):
        async with asyncio.timeout(DEADLINE):
            await rig.proofs.first_asked.wait()
        await until(rig.feed.connected.is_set, "the feed to connect")
        assert rig.replica.copy(ENV) is None  # hydrated, not yet proven

        rig.drop.set()  # the subscription goes; its verification is cancelled
        await until(lambda: rig.sessions >= 2, "the feed to subscribe again")
        await until(lambda: rig.proofs.later >= 1, "the new subscription's own proof")
        await until(rig.feed.connected.is_set, "the new subscription to go live")

        await rig.first_proof_answered()  # proven, but for a subscription that is gone
        assert rig.replica.copy(ENV) is None  # the new subscription's proof is still pending
        assert rig.feed.verification(ENV)["verified"] is False


async def test_a_replaced_proof_answering_late_does_not_stand_for_the_new_one(rig: Rig) -> None:
    async with running(rig.feed):
        async with asyncio.timeout(DEADLINE):
            await rig.proofs.first_asked.wait()
        await until(rig.feed.connected.is_set, "the feed to connect")
        old_epoch = await rig.model.epoch(ENV)

        # The read model is rebuilt under a new epoch (by another instance): the feed hydrates
        # the new snapshot and proves it with a new job, replacing the pending first one.
        assert await build(rig.model, ENV, force=True) is not None
        await until(
            lambda: (
                (position := rig.replica.position(ENV)) is not None and position[0] != old_epoch
            ),
            "the new epoch's snapshot",
        )
        await until(lambda: rig.proofs.later >= 1, "the new epoch's own proof")

        await rig.first_proof_answered()  # it proved the old epoch, not this one
        assert rig.replica.copy(ENV) is None  # the new epoch's proof is still pending
        assert rig.sessions == 1
