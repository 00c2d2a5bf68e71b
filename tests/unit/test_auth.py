"""The token snapshot behind authentication, with a store whose queries the test controls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from cache.broadcaster import Broadcaster
from cache.tokens import TokenNotice
from service import auth as auth_module
from service.auth import Authenticator
from service.errors import Unauthenticated, Unavailable
from service.usecases import tokens

pytestmark = pytest.mark.anyio

SECRET = "aur_a-token-of-the-reader"
HASH = tokens.hash_token(SECRET)
READER = tokens.Known({HASH: ("reader", ["read"])}, frozenset())
REVOKED = tokens.Known({}, frozenset({HASH}))
BEARER = f"Bearer {SECRET}"


class Store:
    """Answers each `tokens.known` query with the next of `answers`: a Known, an exception, or
    an asyncio.Event to wait for before answering with the answer that follows it."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.queries = 0

    async def run(self, use_case: Callable[..., Any]) -> Any:
        assert use_case is tokens.known
        self.queries += 1
        answer = self.answers.pop(0)
        if isinstance(answer, asyncio.Event):
            await answer.wait()
            answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class Notices:
    """Redis's record of revoked hashes, as cache.tokens.TokenNotices reads it; None: down."""

    def __init__(self, revoked: set[str] | None) -> None:
        self.record = revoked
        self.published: list[str] = []

    async def revoked(self) -> set[str]:
        if self.record is None:
            raise ConnectionError("Redis is down")
        return set(self.record)

    async def publish_revoked(self, token_hash: str) -> None:
        if self.record is None:
            raise ConnectionError("Redis is down")
        self.record.add(token_hash)
        self.published.append(token_hash)


def authenticator(
    store: Store, notices: Notices | None = None, broadcaster: Broadcaster | None = None
) -> Authenticator:
    return Authenticator(
        store,  # type: ignore[arg-type]
        enabled=True,
        admin_token="the-environments-admin-token",
        cache_seconds=60,
        notices=notices,  # type: ignore[arg-type]
        broadcaster=broadcaster,
    )


def older_than_the_bound(auth: Authenticator) -> None:
    """As after an idle period: the set was last confirmed longer ago than the bound."""
    auth._fresh_until = 0.0


async def test_a_load_begun_before_a_revocation_does_not_bring_the_token_back() -> None:
    held_back = asyncio.Event()
    # The first load; then a load held back that answers with the tokens as they were.
    store = Store(READER, held_back, READER)
    auth = authenticator(store)
    assert (await auth.principal(BEARER)).name == "reader"
    load = auth._query()
    await asyncio.sleep(0)  # the load reaches its (held back) query
    await auth.revoked(HASH)  # revoked through this instance
    with pytest.raises(Unauthenticated):
        await auth.principal(BEARER)
    held_back.set()  # the load now answers with the tokens as they were before
    await load
    with pytest.raises(Unauthenticated):
        await auth.principal(BEARER)
    await auth.close()


async def test_the_revoking_instance_refuses_at_once_whatever_follows() -> None:
    """The database and Redis both fail right after the revocation was committed."""
    store = Store(READER, Unavailable("down"), Unavailable("down"))
    auth = authenticator(store, Notices(None))
    assert (await auth.principal(BEARER)).name == "reader"
    await auth.revoked(HASH)  # the push through Redis fails
    with pytest.raises(Unauthenticated):
        await auth.principal(BEARER)
    older_than_the_bound(auth)  # and the next confirmation fails too
    with pytest.raises(Unauthenticated):
        await auth.principal(BEARER)
    await auth.close()


async def test_a_set_older_than_the_bound_is_confirmed_before_a_request_is_answered() -> None:
    store = Store(READER, REVOKED)  # revoked through another instance meanwhile
    auth = authenticator(store)
    assert (await auth.principal(BEARER)).name == "reader"
    older_than_the_bound(auth)
    with pytest.raises(Unauthenticated):  # the first request after the idle period already
        await auth.principal(BEARER)
    assert store.queries == 2
    await auth.close()


async def test_without_the_database_redis_confirms_the_set() -> None:
    store = Store(READER, Unavailable("down"))
    auth = authenticator(store, Notices({HASH}))
    assert (await auth.principal(BEARER)).name == "reader"
    older_than_the_bound(auth)
    with pytest.raises(Unauthenticated):
        await auth.principal(BEARER)
    await auth.close()


async def test_a_subscription_back_after_an_outage_applies_what_redis_recorded_meanwhile() -> None:
    store = Store(READER, READER)  # the database has not been asked since (its answer is old)
    auth = authenticator(store, Notices({HASH}))
    await auth.principal(BEARER)
    await auth.caught_up()
    with pytest.raises(Unauthenticated):
        await auth.principal(BEARER)
    await auth.close()


async def test_a_database_that_does_not_answer_is_not_waited_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(auth_module, "DB_WAIT_SECONDS", 0.05)
    never = asyncio.Event()
    store = Store(READER, never)
    auth = authenticator(store, Notices({HASH}))
    await auth.principal(BEARER)
    older_than_the_bound(auth)
    async with asyncio.timeout(5):
        with pytest.raises(Unauthenticated):
            await auth.principal(BEARER)
        for _ in range(20):  # confirmed (by Redis): no request waits now
            with pytest.raises(Unauthenticated):
                await auth.principal(BEARER)
    assert store.queries == 2  # one query in flight, never a pile of them
    await auth.close()


async def test_with_neither_the_database_nor_redis_the_last_set_keeps_working() -> None:
    store = Store(READER, Unavailable("down"))
    auth = authenticator(store, Notices(None))
    await auth.principal(BEARER)
    older_than_the_bound(auth)
    assert (await auth.principal(BEARER)).name == "reader"
    with pytest.raises(Unauthenticated):
        await auth.principal("Bearer made-up")
    assert (await auth.principal(BEARER)).name == "reader"
    assert store.queries == 2  # not asked again per request: once per RETRY_SECONDS
    await auth.close()


async def test_streams_of_a_revoked_token_are_closed_and_the_admin_tokens_are_not() -> None:
    broadcaster = Broadcaster()
    store = Store(READER)
    auth = authenticator(store, broadcaster=broadcaster)
    reader, owner = await auth.authenticate(BEARER)
    admin, no_owner = await auth.authenticate("Bearer the-environments-admin-token")
    assert (reader.name, owner, no_owner, admin.is_admin) == ("reader", HASH, None, True)
    readers_stream = broadcaster.subscribe("production", None, owner)
    admins_stream = broadcaster.subscribe("production", None, no_owner)
    auth.deliver(TokenNotice("revoked", HASH))  # revoked through another instance
    assert readers_stream.closed is not None
    assert admins_stream.closed is None
    assert broadcaster.counts() == {"production": 1}
    await auth.close()


async def test_with_no_tokens_yet_and_the_database_down_requests_fail_fast() -> None:
    store = Store(Unavailable("down"), READER)
    auth = authenticator(store)
    with pytest.raises(Unavailable):
        await auth.principal(BEARER)
    with pytest.raises(Unavailable):
        await auth.principal(BEARER)
    assert store.queries == 1  # the second did not queue up behind the database again
    auth._failed_until = 0.0  # the retry pause is over
    assert (await auth.principal(BEARER)).name == "reader"


async def test_a_reload_during_the_first_load_leaves_tokens_to_answer_with() -> None:
    """A token created while the very first load is still waiting for the database: whichever
    load answers first, requests get an answer, never an empty snapshot."""
    first_held, reload_held = asyncio.Event(), asyncio.Event()
    # Both queries wait; each takes the next answer once released.
    store = Store(first_held, reload_held, READER, READER)
    auth = authenticator(store)
    first = asyncio.create_task(auth.principal(BEARER))
    await asyncio.sleep(0)  # the first load waits on its query
    reload = asyncio.create_task(auth.reload())
    await asyncio.sleep(0)  # so does the reload
    first_held.set()  # the first load answers before the reload does
    assert (await first).name == "reader"
    reload_held.set()
    await reload
    assert (await auth.principal(BEARER)).name == "reader"


async def test_an_answer_to_a_query_begun_longer_ago_than_the_bound_confirms_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A request finds the set older than the bound while a query that hung is still in
    flight; that query answers at last with the tokens as they were when it began. The request
    is answered from a query begun now, not from that one."""

    class Clock:
        offset = 0.0

        @classmethod
        def monotonic(cls) -> float:
            return time.monotonic() + cls.offset

    monkeypatch.setattr(auth_module, "time", Clock)
    held_back = asyncio.Event()
    store = Store(READER, held_back, READER, REVOKED)
    auth = authenticator(store)
    await auth.principal(BEARER)
    auth._query()  # a reload that hangs
    await asyncio.sleep(0)
    Clock.offset = 2 * auth.cache_seconds  # the bound passes while it hangs
    request = asyncio.create_task(auth.principal(BEARER))
    await asyncio.sleep(0)  # the request waits for the query in flight
    held_back.set()  # which answers with the tokens as they were when it began
    with pytest.raises(Unauthenticated):
        await request
    assert store.queries == 3
    await auth.close()


async def test_a_stream_its_token_no_longer_covers_is_closed() -> None:
    """Scopes cannot be changed through the API or the CLI (revoke and create instead), but the
    re-check compares them anyway: after an edit in the database, a reload closes the streams
    the token may no longer read and keeps the others."""
    staging_only = tokens.Known({HASH: ("reader", ["read:staging"])}, frozenset())
    broadcaster = Broadcaster()
    auth = authenticator(Store(READER, staging_only), broadcaster=broadcaster)
    _, owner = await auth.authenticate(BEARER)
    production = broadcaster.subscribe("production", None, owner)
    staging = broadcaster.subscribe("staging", None, owner)
    await auth.reload()
    assert (production.closed is not None, staging.closed) == (True, None)
    await auth.close()
