"""Authentication: `Authorization: Bearer <token>` on every /api/v1 request.

Tokens are known by their SHA-256 (the database holds nothing else). Each instance holds every
active token's hash and answers from them: no SQL per request, not even for a flood of made-up
tokens. They are refreshed in the background by one query once AURORA_TOKEN_CACHE_SECONDS have
passed (requests never wait for it); a token created or revoked through this instance counts at
once, through another or the CLI within that time. With the database down the tokens last
loaded keep working. AURORA_ADMIN_TOKEN, when set, is an admin token that lives only in the
environment; it is compared in constant time. Failed attempts are logged without the token.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time

from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import Unauthenticated, Unavailable
from service.headers import header
from service.principal import ADMIN, ANONYMOUS, BOOTSTRAP_ADMIN, Principal
from service.problems import render
from service.store import Store
from service.usecases import tokens

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1/"
MAX_TOKEN_LENGTH = 200
RETRY_SECONDS = 1.0  # how soon to try again when a reload found the database down


class Authenticator:
    def __init__(
        self, store: Store, *, enabled: bool, admin_token: str | None, cache_seconds: float
    ) -> None:
        self.store = store
        self.enabled = enabled
        self._admin_hash = tokens.hash_token(admin_token) if admin_token else None
        self.cache_seconds = cache_seconds
        self._active: dict[str, Principal] | None = None  # token hash -> principal
        self._expires = 0.0
        self._generation = 0  # bumped by reload(): a load begun before it must not win
        self._stored_generation = -1  # the generation of the tokens held
        self._first_load = asyncio.Lock()
        self._failed_until = 0.0  # no tokens yet and the database down: fail fast until then
        self._refresh: asyncio.Task[None] | None = None

    async def principal(self, authorization: str | None) -> Principal:
        if not self.enabled:
            return ANONYMOUS
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_LENGTH:
            raise Unauthenticated("send Authorization: Bearer <token>")
        token_hash = tokens.hash_token(token)
        if self._admin_hash is not None and hmac.compare_digest(token_hash, self._admin_hash):
            return Principal(BOOTSTRAP_ADMIN, frozenset({ADMIN}))
        principal = await self._lookup(token_hash)
        if principal is None:
            raise Unauthenticated("the token is invalid or revoked")
        return principal

    async def _lookup(self, token_hash: str) -> Principal | None:
        if self._active is None:
            await self._load_first()
        elif time.monotonic() >= self._expires and (self._refresh is None or self._refresh.done()):
            self._refresh = asyncio.create_task(self._refresh_quietly(), name="token-refresh")
        assert self._active is not None  # loaded, or _load_first raised
        return self._active.get(token_hash)

    async def _load_first(self) -> None:
        if time.monotonic() < self._failed_until:
            raise Unavailable("the API tokens cannot be loaded: the database is unavailable")
        async with self._first_load:  # one query, however many requests arrive at start
            if self._active is not None:
                return
            try:
                await self._load()
            except Unavailable:
                self._failed_until = time.monotonic() + RETRY_SECONDS
                raise

    async def _refresh_quietly(self) -> None:
        try:
            await self._load()
        except Unavailable:
            log.warning("cannot refresh API tokens (database unavailable); keeping the last")
            self._expires = time.monotonic() + min(self.cache_seconds, RETRY_SECONDS)
        except Exception:  # a background task: nobody else would see it
            log.exception("cannot refresh API tokens; keeping the last")
            self._expires = time.monotonic() + min(self.cache_seconds, RETRY_SECONDS)

    async def _load(self) -> None:
        generation = self._generation
        found = await self.store.run(tokens.active)
        if generation < self._stored_generation:
            return  # a load begun after this one (a reload) already answered: it is newer
        self._stored_generation = generation
        self._active = {
            token_hash: Principal(name, frozenset(scopes))
            for token_hash, (name, scopes) in found.items()
        }
        self._expires = time.monotonic() + self.cache_seconds

    async def reload(self) -> None:
        """Load the tokens now: after this instance created or revoked one, it counts at once."""
        self._generation += 1
        try:
            await self._load()
        except Unavailable:
            log.warning("cannot reload API tokens (database unavailable); retrying soon")
            self._expires = 0.0

    async def close(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh


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
                    principal = await authenticator.principal(authorization)
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
                scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)
