"""The token snapshot behind authentication, with a store whose queries the test controls."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from service.auth import Authenticator
from service.errors import Unauthenticated, Unavailable
from service.usecases import tokens

pytestmark = pytest.mark.anyio

SECRET = "aur_a-token-of-the-reader"
READER = {tokens.hash_token(SECRET): ("reader", ["read"])}
BEARER = f"Bearer {SECRET}"


class Store:
    """Answers each `tokens.active` query with the next of `answers`: a dict, an exception, or
    an asyncio.Event to wait for before answering with the dict that follows it."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.queries = 0

    async def run(self, use_case: Callable[..., Any]) -> Any:
        assert use_case is tokens.active
        self.queries += 1
        answer = self.answers.pop(0)
        if isinstance(answer, asyncio.Event):
            await answer.wait()
            answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def authenticator(store: Store) -> Authenticator:
    return Authenticator(store, enabled=True, admin_token=None, cache_seconds=60)  # type: ignore[arg-type]


async def test_a_refresh_begun_before_a_revocation_does_not_bring_the_token_back() -> None:
    held_back = asyncio.Event()
    # The first load; a refresh held back; the reload after the revocation (no tokens left);
    # then, once released, the held-back refresh answers with the tokens as they were before.
    store = Store(READER, held_back, {}, READER)
    auth = authenticator(store)
    assert (await auth.principal(BEARER)).name == "reader"
    auth._expires = 0.0  # the refresh is due
    assert (await auth.principal(BEARER)).name == "reader"  # answered at once, refresh started
    await asyncio.sleep(0)  # let the refresh reach its (held back) query
    await auth.reload()  # the token was revoked through this instance
    with pytest.raises(Unauthenticated):
        await auth.principal(BEARER)
    held_back.set()  # the refresh now answers with the tokens as they were before
    assert auth._refresh is not None
    await auth._refresh
    with pytest.raises(Unauthenticated):
        await auth.principal(BEARER)
    await auth.close()


async def test_requests_never_wait_for_a_refresh() -> None:
    never = asyncio.Event()
    store = Store(READER, never)
    auth = authenticator(store)
    await auth.principal(BEARER)
    auth._expires = 0.0
    async with asyncio.timeout(1):
        for _ in range(100):
            assert (await auth.principal(BEARER)).name == "reader"
            await asyncio.sleep(0)  # the refresh runs meanwhile, and waits on its query
    assert store.queries == 2  # one refresh in flight, however many requests found it due
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


async def test_a_failed_refresh_keeps_the_tokens_held() -> None:
    store = Store(READER, Unavailable("down"))
    auth = authenticator(store)
    await auth.principal(BEARER)
    auth._expires = 0.0
    await auth.principal(BEARER)
    assert auth._refresh is not None
    await auth._refresh
    assert (await auth.principal(BEARER)).name == "reader"
    with pytest.raises(Unauthenticated):
        await auth.principal("Bearer made-up")


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
