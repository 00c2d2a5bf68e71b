"""Authentication: `Authorization: Bearer <token>` on every /api/v1 request.

Tokens are known by their SHA-256 (the database holds nothing else). Each instance holds every
active token's hash and answers from them: no SQL per request, not even for a flood of made-up
tokens. Revocation is bounded (issue #9):

- A revocation through this instance removes the token here at once, whatever happens next,
  and is pushed through Redis (cache/tokens.py: a channel of its own plus a record of revoked
  hashes), so every live instance refuses it at once too.
- Every instance also confirms its set at least every AURORA_TOKEN_CACHE_SECONDS (the bound),
  in the background: from the database, or, when the database does not answer within
  DB_WAIT_SECONDS, against Redis's record of revocations. No request is answered from a set
  older than the bound while either can be asked: a request that finds it older waits for a
  confirmation (at most CONFIRM_WAIT_SECONDS).
- Only when neither the database nor Redis answers does the set last loaded keep working
  (retried every RETRY_SECONDS), so that reads survive an outage: the documented trade-off.
- Open streams are re-checked whenever the set changes or is confirmed: a stream whose token is
  no longer active, or no longer covers the stream's environment, is closed.

AURORA_ADMIN_TOKEN, when set, is an admin token that lives only in the environment; it is
compared in constant time and never revoked. Failed attempts are logged without the token.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import Iterable

from redis.exceptions import RedisError
from starlette.types import ASGIApp, Receive, Scope, Send

from cache.broadcaster import Broadcaster
from cache.tokens import TokenNotice, TokenNotices
from service.errors import Unauthenticated, Unavailable
from service.headers import header
from service.principal import ADMIN, ANONYMOUS, BOOTSTRAP_ADMIN, Principal
from service.problems import render
from service.store import Store
from service.usecases import tokens

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1/"
MAX_TOKEN_LENGTH = 200
RETRY_SECONDS = 1.0  # neither the database nor Redis answered: try again this soon
DB_WAIT_SECONDS = 1.0  # a confirmation waits this long for the database, then asks Redis
REDIS_WAIT_SECONDS = 1.0  # and this long for Redis
CONFIRM_WAIT_SECONDS = DB_WAIT_SECONDS + REDIS_WAIT_SECONDS  # the longest a request waits
REFRESH_MARGIN_SECONDS = 1.0  # confirm this long before the bound, so requests need not wait
STREAM_CLOSED = "the token was revoked or no longer covers this stream"


class Authenticator:
    def __init__(
        self,
        store: Store,
        *,
        enabled: bool,
        admin_token: str | None,
        cache_seconds: float,
        notices: TokenNotices | None = None,
        broadcaster: Broadcaster | None = None,
    ) -> None:
        self.store = store
        self.enabled = enabled
        self._admin_hash = tokens.hash_token(admin_token) if admin_token else None
        self.cache_seconds = cache_seconds  # the bound
        self.notices = notices
        self.broadcaster = broadcaster
        self._active: dict[str, Principal] | None = None  # token hash -> principal
        # Every hash known to be revoked. A token is never un-revoked, so this only grows (by
        # the few tokens a deployment ever revokes), and no load that began before a
        # revocation can bring the token back.
        self._revoked: set[str] = set()
        self._db_revoked: frozenset[str] = frozenset()  # as of the last database load
        self._fresh_until = 0.0  # the set was confirmed less than the bound before this
        self._applied_start = float("-inf")  # when the newest applied load began
        self._unreachable_until = 0.0  # neither database nor Redis answered: until then
        self._source = "database"  # what confirmed the set last: database | redis | none
        self._failed_until = 0.0  # no tokens yet and the database down: fail fast until then
        self._db_load: asyncio.Task[None] | None = None  # at most one query at a time
        self._confirming: asyncio.Task[bool] | None = None
        self._reloading: asyncio.Task[None] | None = None
        self._reload_again = False

    # -- requests --------------------------------------------------------------------------

    async def principal(self, authorization: str | None) -> Principal:
        return (await self.authenticate(authorization))[0]

    async def authenticate(self, authorization: str | None) -> tuple[Principal, str | None]:
        """The principal, and the hash of the API token it came from (None for the
        environment's admin token and with authentication disabled: never revoked)."""
        if not self.enabled:
            return ANONYMOUS, None
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_LENGTH:
            raise Unauthenticated("send Authorization: Bearer <token>")
        token_hash = tokens.hash_token(token)
        if self._admin_hash is not None and hmac.compare_digest(token_hash, self._admin_hash):
            return Principal(BOOTSTRAP_ADMIN, frozenset({ADMIN})), None
        principal = await self._lookup(token_hash)
        if principal is None:
            raise Unauthenticated("the token is invalid or revoked")
        return principal, token_hash

    async def _lookup(self, token_hash: str) -> Principal | None:
        if self._active is None:
            await self._load_first()
        elif time.monotonic() >= self._fresh_until:
            await self._confirm_before_serving()
        assert self._active is not None  # loaded, or _load_first raised
        return self._active.get(token_hash)

    async def _load_first(self) -> None:
        if time.monotonic() < self._failed_until:
            raise Unavailable("the API tokens cannot be loaded: the database is unavailable")
        try:  # one query, however many requests arrive at start
            await asyncio.shield(self._query())
        except Unavailable:
            self._failed_until = time.monotonic() + RETRY_SECONDS
            raise

    async def _confirm_before_serving(self) -> None:
        """The set is older than the bound: wait (briefly) for the database or Redis."""
        if time.monotonic() < self._unreachable_until:
            return  # neither answered a moment ago: the last set, until the next try
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CONFIRM_WAIT_SECONDS):
                await asyncio.shield(self._confirmation())

    # -- confirmation ----------------------------------------------------------------------

    def _query(self) -> asyncio.Task[None]:
        """The database query in flight, or a new one: a database that hangs never holds
        more than one connection for the tokens."""
        if self._db_load is None or self._db_load.done():
            self._db_load = asyncio.create_task(self._load(), name="token-load")
            self._db_load.add_done_callback(_retrieve)
        return self._db_load

    def _confirmation(self) -> asyncio.Task[bool]:
        if self._confirming is None or self._confirming.done():
            self._confirming = asyncio.create_task(self._confirm(), name="token-confirm")
        return self._confirming

    async def _confirm(self) -> bool:
        """Bring the set up to date: from the database, else from Redis's record of
        revocations. False if neither answered (the last set keeps working meanwhile)."""
        started = time.monotonic()
        deadline = asyncio.get_running_loop().time() + DB_WAIT_SECONDS
        for _ in range(2):
            try:
                async with asyncio.timeout_at(deadline):
                    await asyncio.shield(self._query())
            except (Unavailable, TimeoutError):
                break
            except Exception:  # a task: nobody else would see it
                log.exception("cannot load API tokens")
                break
            if time.monotonic() < self._fresh_until:
                self._confirmed_by("database")
                return True
            # That query began longer ago than the bound (it hung): its answer confirms
            # nothing now. Ask once more, within the same deadline.
        if self._active is not None and self.notices is not None:
            try:
                async with asyncio.timeout(REDIS_WAIT_SECONDS):
                    revoked = await self.notices.revoked()
            except (RedisError, OSError, TimeoutError):
                pass
            else:
                self._apply_revoked(revoked, started)
                self._confirmed_by("redis")
                return True
        self._unreachable_until = time.monotonic() + RETRY_SECONDS
        self._confirmed_by("none")
        return False

    def _confirmed_by(self, source: str) -> None:
        if source != self._source:
            if source == "redis":
                log.warning("database unavailable: API tokens confirmed against Redis")
            elif source == "none":
                log.warning(
                    "API tokens cannot be confirmed (neither the database nor Redis answers): "
                    "the tokens last loaded keep working until one does"
                )
            else:
                log.info("API tokens confirmed against the database again")
        self._source = source

    async def _load(self) -> None:
        started = time.monotonic()
        found = await self.store.run(tokens.known)
        if started < self._applied_start:
            return  # a load begun after this one already answered: it is newer
        self._applied_start = started
        self._db_revoked = found.revoked
        self._revoked |= found.revoked
        self._active = {
            token_hash: Principal(name, frozenset(scopes))
            for token_hash, (name, scopes) in found.active.items()
            if token_hash not in self._revoked
        }
        self._fresh_until = max(self._fresh_until, started + self.cache_seconds)
        self._unreachable_until = 0.0
        self._recheck_streams()

    def _apply_revoked(self, revoked: Iterable[str], confirmed_at: float | None = None) -> None:
        """Refuse every hash in Redis's record; with `confirmed_at`, the set counts as
        confirmed as of then (the database did not answer, Redis did)."""
        for token_hash in revoked:
            self.forget(token_hash, recheck=False)
        if confirmed_at is not None:
            self._fresh_until = max(self._fresh_until, confirmed_at + self.cache_seconds)
            self._unreachable_until = 0.0
        self._recheck_streams()

    def forget(self, token_hash: str, *, recheck: bool = True) -> None:
        """Refuse this token from now on, on this instance (it was revoked)."""
        self._revoked.add(token_hash)
        if self._active is not None:
            self._active.pop(token_hash, None)
        if recheck:
            self._recheck_streams()

    def _recheck_streams(self) -> None:
        """Close the streams whose token is no longer active or no longer covers them."""
        active = self._active
        if self.broadcaster is None or active is None:
            return

        def allowed(token_hash: str, environment: str) -> bool:
            principal = active.get(token_hash)
            return principal is not None and principal.can_read(environment)

        closed = self.broadcaster.close_unless(allowed, STREAM_CLOSED)
        if closed:
            log.info("closed %d stream(s): %s", closed, STREAM_CLOSED)

    # -- changes through this instance, and from the others ---------------------------------

    async def revoked(self, token_hash: str) -> None:
        """A token was revoked through this instance: refused here at once, whatever happens
        next, and pushed to the other instances (else they refuse it within the bound)."""
        self.forget(token_hash)
        if self.notices is None:
            return
        try:
            async with asyncio.timeout(REDIS_WAIT_SECONDS):
                await self.notices.publish_revoked(token_hash)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning(
                "revocation not pushed through Redis (%s): other instances refuse the token "
                "within AURORA_TOKEN_CACHE_SECONDS (%.0fs), when they reload",
                type(exc).__name__,
                self.cache_seconds,
            )

    async def created(self) -> None:
        """A token was created through this instance: usable here at once, and the others are
        told to reload (only hashes of revoked tokens travel through Redis, never scopes)."""
        await self.reload()
        if self.notices is None:
            return
        try:
            async with asyncio.timeout(REDIS_WAIT_SECONDS):
                await self.notices.publish_created()
        except (RedisError, OSError, TimeoutError) as exc:
            log.info("token creation not pushed through Redis (%s)", type(exc).__name__)

    async def reload(self) -> None:
        """Load the tokens now, by a query begun now (not one already in flight)."""
        try:
            await self._load()
        except Unavailable:
            log.warning("cannot reload API tokens (database unavailable)")

    def deliver(self, notice: TokenNotice) -> None:
        """A notice from another instance (or the CLI), through Redis."""
        if notice.token_hash is not None:
            self.forget(notice.token_hash)
        else:
            self._reload_soon()

    async def caught_up(self) -> None:
        """The subscription is (re)established: apply what was revoked while it was down."""
        if self.notices is not None:
            self._apply_revoked(await self.notices.revoked())
        self._reload_soon()  # tokens created meanwhile

    def _reload_soon(self) -> None:
        """One reload at a time, and one more if asked again meanwhile: a burst of notices
        costs at most two queries."""
        self._reload_again = True
        if self._reloading is None or self._reloading.done():
            self._reloading = asyncio.create_task(self._reload_while_asked(), name="token-reload")

    async def _reload_while_asked(self) -> None:
        while self._reload_again:
            self._reload_again = False
            await self.reload()

    # -- the background loops --------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Confirm the set within the bound, idle or not, and follow the notices."""
        if not self.enabled:
            return
        loops = [self._refresh(stop)]
        if self.notices is not None:
            loops.append(self.notices.run(stop, self.deliver, self.caught_up))
        await asyncio.gather(*loops)

    async def _refresh(self, stop: asyncio.Event) -> None:
        margin = min(REFRESH_MARGIN_SECONDS, self.cache_seconds / 4)
        while not stop.is_set():
            confirmed = await asyncio.shield(self._confirmation())
            if confirmed and self._source == "database":
                await self._reseed()
            delay = self._fresh_until - margin - time.monotonic() if confirmed else RETRY_SECONDS
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(0.05, delay))

    async def _reseed(self) -> None:
        if self.notices is None:
            return
        try:
            async with asyncio.timeout(REDIS_WAIT_SECONDS):
                await self.notices.reseed(self._db_revoked)
        except (RedisError, OSError, TimeoutError):
            pass  # Redis is down: the next confirmation tries again

    async def close(self) -> None:
        for task in (self._confirming, self._db_load, self._reloading):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


def _retrieve(task: asyncio.Task[None]) -> None:
    """A load nobody waits for any more (it outlived its deadline): its error was handled."""
    if not task.cancelled():
        task.exception()


class AuthMiddleware:
    """Authenticates /api/v1 requests before anything else runs; 401 problem if it fails.
    The principal is left in the request state for the routes (and the fast path)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(API_PREFIX):
            authenticator: Authenticator | None = getattr(scope["app"].state, "auth", None)
            if authenticator is not None:
                authorization = header(scope, b"authorization")
                try:
                    principal, token_hash = await authenticator.authenticate(authorization)
                except (Unauthenticated, Unavailable) as exc:
                    if isinstance(exc, Unauthenticated):
                        client = scope.get("client") or ("?", 0)
                        log.warning(
                            "refused %s %s from %s: %s",
                            scope["method"],
                            scope["path"],
                            client[0],
                            exc.detail,
                        )
                    await render(exc, scope["path"])(scope, receive, send)
                    return
                state = scope.setdefault("state", {})
                state["principal"], state["token_hash"] = principal, token_hash
        await self.app(scope, receive, send)
