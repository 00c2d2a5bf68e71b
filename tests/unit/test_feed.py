"""The change feed on fakeredis: it outlives surprises, notices a subscription that went silent or
missed messages, and rebuilds when Redis goes back in time (issue #4: never silently stale)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aurora_client.events import ChangeEvent
from fakeredis import FakeAsyncRedis, FakeServer

from cache.broadcaster import Broadcaster
from cache.feed import ChangeFeed
from cache.keys import Keys
from cache.read_model import RedisReadModel
from cache.replica import Replica
from tests.readmodels import build

ENV = "production"
DEADLINE = 5.0
pytestmark = pytest.mark.anyio


def flag(version: int, percentage: int) -> ChangeEvent:
    state = {"flag_key": "f", "environment": ENV, "is_enabled": True, "version": version}
    return ChangeEvent("flag", "upsert", "f", ENV, None, version, state | {"p": percentage})


@dataclass
class Rig:
    model: RedisReadModel
    replica: Replica
    feed: ChangeFeed
    feed_redis: Any
    sessions: int = 0
    failures_left: int = 0
    verifications: int = 0
    causes: list[str] = field(default_factory=list)
    # Replaces the maintainer's proof against the database when set.
    verify_answer: Callable[[str], Awaitable[tuple[str, str] | None]] | None = None
    # Per session number: replace the subscription's get_message (a dead or lossy connection).
    sabotage: dict[int, Callable[[Any], Callable[..., Awaitable[Any]]]] = field(
        default_factory=dict
    )


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    server = FakeServer()
    redis, feed_redis = FakeAsyncRedis(server=server), FakeAsyncRedis(server=server)
    model = RedisReadModel(redis, Keys("t:"), feed_length=100)
    replica = Replica()

    class Maintainer:
        """The database side, reduced to what the feed asks of it."""

        async def ensure_built(self, environment: str) -> None:
            if rig.failures_left:
                rig.failures_left -= 1
                raise RuntimeError("the database is down")  # not a Redis error: must not kill it
            if await model.epoch(environment) is None:
                await build(model, environment)

        async def rebuild_lost(self, environment: str, epoch: str, cause: str) -> None:
            rig.causes.append(cause)
            await model.retire(environment, epoch)
            await self.ensure_built(environment)

        async def verify(self, environment: str) -> tuple[str, str] | None:
            rig.verifications += 1
            if rig.verify_answer is not None:
                return await rig.verify_answer(environment)
            return None

    feed = ChangeFeed(feed_redis, model, replica, Broadcaster(100), [ENV], maintainer=Maintainer())
    # Generous silence (a loaded 2-core machine stalls a loop now and then); the test of a dead
    # subscription shortens it.
    feed.check_every, feed.silent_after, feed.behind_grace = 0.05, 5.0, 0.1
    rig = Rig(model, replica, feed, feed_redis)
    original = feed_redis.pubsub

    def pubsub(**kwargs: Any) -> Any:
        rig.sessions += 1
        subscription = original(**kwargs)
        if rig.sessions in rig.sabotage:
            subscription.get_message = rig.sabotage[rig.sessions](subscription.get_message)
        return subscription

    feed_redis.pubsub = pubsub
    yield rig
    await redis.aclose()
    await feed_redis.aclose()


@contextlib.asynccontextmanager
async def running(feed: ChangeFeed) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(feed.run(stop))
    try:
        yield
    finally:
        stop.set()
        async with asyncio.timeout(DEADLINE):
            await task


async def until(check: Callable[[], Any], what: str) -> None:
    try:
        async with asyncio.timeout(DEADLINE):
            while not check():  # noqa: ASYNC110 - polls plain state, no event to await
                await asyncio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


def percentage_in(replica: Replica) -> Any:
    copy = replica.copy(ENV)
    item = copy.flags.get("f") if copy is not None else None
    return None if item is None else item["p"]


def dead(_get_message: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """A socket that neither errs nor delivers: every read times out."""

    async def get_message(**kwargs: Any) -> None:
        await asyncio.sleep(kwargs.get("timeout") or 0)

    return get_message


def lossy(get_message: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Answers PINGs but loses every published message."""

    async def filtered(**kwargs: Any) -> Any:
        message = await get_message(**kwargs)
        return None if message is not None and message["type"] == "message" else message

    return filtered


async def test_the_feed_outlives_an_unexpected_error_and_connects(rig: Rig) -> None:
    rig.failures_left = 2  # the first two builds fail as a database outage would
    async with running(rig.feed):
        await until(rig.feed.connected.is_set, "the feed to connect after the failures")
        await until(lambda: rig.replica.copy(ENV) is not None, "the environment to be built")
        await rig.model.apply(flag(1, 10))
        await until(lambda: percentage_in(rig.replica) == 10, "a live change")


async def test_a_silent_subscription_is_dropped_and_reconnected(rig: Rig) -> None:
    rig.sabotage[1] = dead
    rig.feed.silent_after = 0.4
    async with running(rig.feed):
        await until(lambda: rig.sessions >= 2, "a second subscription")
        await until(rig.feed.connected.is_set, "the second subscription to go live")
        await rig.model.apply(flag(1, 20))
        await until(lambda: percentage_in(rig.replica) == 20, "a change on the new subscription")


async def test_changes_the_subscription_did_not_bring_are_replayed(rig: Rig) -> None:
    rig.sabotage[1] = lossy
    async with running(rig.feed):
        await until(rig.feed.connected.is_set, "the feed to connect")
        await until(lambda: rig.replica.copy(ENV) is not None, "the replica to be trusted")
        await rig.model.apply(flag(1, 30))
        await rig.model.apply(flag(2, 40))
        await until(lambda: percentage_in(rig.replica) == 40, "the missed changes, replayed")
        assert rig.replica.position(ENV)[1] == 2  # type: ignore[index]
        assert rig.sessions == 1  # PINGs answered: the connection itself was kept


async def test_redis_going_back_in_time_is_rebuilt_under_a_new_epoch(rig: Rig) -> None:
    async with running(rig.feed):
        await until(rig.feed.connected.is_set, "the feed to connect")
        await until(lambda: rig.replica.copy(ENV) is not None, "the replica to be trusted")
        for version in (1, 2, 3):
            await rig.model.apply(flag(version, version * 10))
        await until(lambda: rig.replica.position(ENV)[1] == 3, "revision 3")  # type: ignore[index]
        old_epoch = await rig.model.epoch(ENV)
        # Restored from a snapshot taken at revision 1: the later revisions are gone.
        k = rig.model.keys.env(ENV)
        await rig.model.redis.set(k.revision, 1)
        await rig.model.redis.xtrim(k.feed, maxlen=1)
        await until(
            lambda: (
                (position := rig.replica.position(ENV)) is not None
                and position[0] != old_epoch
                and rig.replica.copy(ENV) is not None
            ),
            "a rebuild under a new epoch",
        )


class NoStore:
    """The outbox bookkeeping a propagation does afterwards, with nothing behind it."""

    async def run(self, *_args: Any, **_kwargs: Any) -> None:
        return None


async def test_a_write_a_relay_applied_first_is_still_read_by_its_writer(rig: Rig) -> None:
    """A relay (this instance's or another's) may apply the committed change before the writer
    does; the writer's apply then finds it STALE, and must still put it in its own replica
    (read-your-writes), not wait for the feed to bring it."""
    from database.uow import Published  # noqa: PLC0415 - the service side of the rig
    from service.propagation import Outcome, Propagator  # noqa: PLC0415

    await build(rig.model, ENV)
    rig.replica.hydrate(ENV, await rig.model.snapshot(ENV))  # no feed: only the writer's apply
    propagator = Propagator(NoStore(), rig.model, rig.replica, wait=1.0, relay_interval=1.0)  # type: ignore[arg-type]
    change = flag(1, 70)
    assert await rig.model.apply(change) == 1  # the relay got there first
    assert await propagator.propagate([Published(7, change, 0)]) is Outcome.COMPLETE
    assert percentage_in(rig.replica) == 70


# -- issue 9: proof against the database, and nothing blocks the feed ---------------------


async def test_a_loss_found_by_the_proof_untrusts_and_rebuilds_under_a_new_epoch(rig: Rig) -> None:
    rig.feed.verify_every = 0.05
    async with running(rig.feed):
        await until(lambda: rig.replica.copy(ENV) is not None, "the replica to be trusted")
        old_epoch = await rig.model.epoch(ENV)
        assert old_epoch is not None
        subscriber = rig.feed.broadcaster.subscribe(ENV, None)

        async def lost(environment: str) -> tuple[str, str] | None:
            rig.verify_answer = None  # once
            return old_epoch, "lost_writes"

        rig.verify_answer = lost
        await until(lambda: subscriber.closed is not None, "the stream to be closed")
        await until(
            lambda: (copy := rig.replica.copy(ENV)) is not None and copy.epoch != old_epoch,
            "a trusted replica of the rebuilt model",
        )
        assert rig.causes == ["lost_writes"]


async def test_a_snapshot_is_trusted_only_once_proven(rig: Rig) -> None:
    """On (re)connect the replica is hydrated from Redis, but not served until the database
    confirmed Redis holds every acknowledged change."""
    proven = asyncio.Event()

    async def slow_proof(environment: str) -> tuple[str, str] | None:
        await proven.wait()
        return None

    rig.verify_answer = slow_proof
    await build(rig.model, ENV)  # as another instance left it (a build of our own is proof)
    async with running(rig.feed):
        await until(rig.feed.connected.is_set, "the feed to connect")
        await until(lambda: rig.replica.position(ENV) is not None, "the snapshot")
        await asyncio.sleep(0.1)  # the proof is pending: however long it takes, no trust
        assert rig.replica.copy(ENV) is None
        proven.set()
        await until(lambda: rig.replica.copy(ENV) is not None, "trust after the proof")


async def test_an_unreachable_database_serves_the_model_as_it_is_and_says_so(rig: Rig) -> None:
    async def down(environment: str) -> tuple[str, str] | None:
        raise ConnectionError("the database does not answer")

    rig.verify_answer = down
    async with running(rig.feed):
        await until(lambda: rig.replica.copy(ENV) is not None, "the replica served anyway")
        proof = rig.feed.verification(ENV)
        assert (proof["verified"], proof["database_reachable"]) == (False, False)


async def test_an_environment_waiting_for_a_build_does_not_freeze_the_others() -> None:
    """The build of one environment hangs (another instance holds its lock); changes of the
    other environment keep reaching the replica and its streams, and the waiting one is not
    served from a frozen copy."""
    server = FakeServer()
    redis, feed_redis = FakeAsyncRedis(server=server), FakeAsyncRedis(server=server)
    model = RedisReadModel(redis, Keys("t:"), feed_length=100)
    replica = Replica()
    release = asyncio.Event()

    class Maintainer:
        async def ensure_built(self, environment: str) -> None:
            if environment == "staging":
                await release.wait()  # another instance's build, taking its time
            if await model.epoch(environment) is None:
                await build(model, environment)

        async def rebuild_lost(self, environment: str, epoch: str, cause: str) -> None:
            await model.retire(environment, epoch)
            await self.ensure_built(environment)

        async def verify(self, environment: str) -> tuple[str, str] | None:
            return None

    await build(model, ENV)
    broadcaster = Broadcaster(100)
    feed = ChangeFeed(
        feed_redis, model, replica, broadcaster, [ENV, "staging"], maintainer=Maintainer()
    )
    feed.check_every = 0.05
    async with running(feed):
        await until(lambda: replica.copy(ENV) is not None, "production to be served")
        subscriber = broadcaster.subscribe(ENV, None)
        await model.apply(flag(1, 55), 1)
        await until(lambda: percentage_in(replica) == 55, "production's change")
        message = await subscriber.queue.get(DEADLINE)
        assert message is not None
        assert message.revision == 1
        assert replica.copy("staging") is None  # not built: never served as trusted
        assert feed.verification("staging")["rebuilding"] is True
        release.set()
        await until(lambda: replica.copy("staging") is not None, "staging once built")
    await redis.aclose()
    await feed_redis.aclose()


async def test_a_committed_write_whose_propagation_fails_oddly_is_pending_not_an_error(
    rig: Rig,
) -> None:
    """redis-py on uvloop raises RuntimeError for a connection reset mid-command: the change is
    committed, so the writer hears `pending` (the relay applies it), never a 500."""
    from database.uow import Published  # noqa: PLC0415 - the service side of the rig
    from service.propagation import Outcome, Propagator  # noqa: PLC0415

    await build(rig.model, ENV)

    async def broken(*_args: Any, **_kwargs: Any) -> int:
        raise RuntimeError("unable to perform operation on <TCPTransport closed=True>")

    rig.model.apply = broken  # type: ignore[method-assign]
    propagator = Propagator(NoStore(), rig.model, rig.replica, wait=1.0, relay_interval=1.0)  # type: ignore[arg-type]
    assert await propagator.propagate([Published(7, flag(1, 70), 0)]) is Outcome.PENDING


def segment(version: int, users: list[str] | None) -> ChangeEvent:
    state = None
    if users is not None:
        constraint = {"context_name": "userId", "operator": "IN", "values": users}
        state = {"name": "testers", "environment": ENV, "constraints": [constraint]}
    return ChangeEvent.from_dict(
        {
            "kind": "segment",
            "op": "upsert" if users is not None else "delete",
            "key": "testers",
            "environment": ENV,
            "service_name": None,
            "version": version,
            "state": None if state is None else state | {"version": version},
        }
    )


async def test_a_segment_change_is_one_event_and_recompiles_what_flags_see(rig: Rig) -> None:
    """A segment used by a targeted flag changes: one event on the stream, and the replica's
    compiled segment (what every flag using it evaluates against) follows it."""
    from aurora_client.targeting import Context, is_enabled  # noqa: PLC0415

    from cache.stream import Streams  # noqa: PLC0415

    rule = {"id": "r1", "constraints": [], "segments": ["testers"], "rollout": {"percentage": 100}}
    targeted = {"flag_key": "t", "environment": ENV, "is_enabled": True, "rules": [rule]}
    streams = Streams(rig.model, rig.replica, rig.feed.broadcaster, heartbeat_seconds=30)

    def on_for(user: str) -> bool:
        copy = rig.replica.copy(ENV)
        assert copy is not None
        targets = copy.targets
        flag = targets.flags["t"]
        return is_enabled(flag, Context(user_id=user), targets.flags, targets.segments)

    async with running(rig.feed):
        await until(rig.feed.connected.is_set, "the feed to connect")
        await until(lambda: rig.replica.copy(ENV) is not None, "the replica to be trusted")
        await rig.model.apply(ChangeEvent("flag", "upsert", "t", ENV, None, 1, targeted))
        await rig.model.apply(segment(1, ["7"]))
        await until(lambda: rig.replica.position(ENV)[1] == 2, "both changes")  # type: ignore[index]
        assert on_for("7")
        assert not on_for("8")

        stream = await streams.open(ENV, "billing", None)
        events = stream.events()
        async with asyncio.timeout(DEADLINE):
            first = await anext(events)
        body = json.loads(first.data)
        assert first.event == "snapshot"
        assert [(s["name"], s["version"]) for s in body["segments"]] == [("testers", 1)]

        await rig.model.apply(segment(2, ["8"]))
        async with asyncio.timeout(DEADLINE):
            change = await anext(events)
        assert (change.event, change.id) == ("upsert", f"{body['cursor'].rsplit(':', 1)[0]}:3")
        assert json.loads(change.data)["kind"] == "segment"
        assert (on_for("7"), on_for("8")) == (False, True)

        await rig.model.apply(segment(3, None))
        async with asyncio.timeout(DEADLINE):
            deleted = await anext(events)
        assert (deleted.event, json.loads(deleted.data)["state"]) == ("delete", None)
        assert not on_for("8")  # a rule naming a missing segment does not match
        await events.aclose()
