"""Authentication: `Authorization: Bearer <token>` on every /api/v1 request.

Tokens are looked up by their SHA-256 (the database holds nothing else) and the answer, positive
or negative, is cached for AURORA_TOKEN_CACHE_SECONDS, so a warm read still needs no SQL; a
revocation is immediate on the instance that made it and reaches the others within that time.
If the database is down when a cached entry expires, the last answer is kept (reads keep
working through a database outage). AURORA_ADMIN_TOKEN, when set, is an admin token that lives
only in the environment; it is compared in constant time. Failed attempts are logged without
the token.
"""

from __future__ import annotations

import hmac
import logging
import time
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import Unauthenticated, Unavailable
from service.principal import ADMIN, ANONYMOUS, BOOTSTRAP_ADMIN, Principal
from service.problems import render
from service.store import Store
from service.usecases import tokens

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1/"
MAX_TOKEN_LENGTH = 200
MAX_CACHED = 10_000


@dataclass(frozen=True, slots=True)
class _Cached:
    principal: Principal | None
    expires: float


class Authenticator:
    def __init__(
        self, store: Store, *, enabled: bool, admin_token: str | None, cache_seconds: float
    ) -> None:
        self.store = store
        self.enabled = enabled
        self._admin_hash = tokens.hash_token(admin_token) if admin_token else None
        self.cache_seconds = cache_seconds
        self._cache: dict[str, _Cached] = {}

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
        now = time.monotonic()
        cached = self._cache.get(token_hash)
        if cached is not None and cached.expires > now:
            return cached.principal
        try:
            found = await self.store.run(tokens.active_by_hash, token_hash)
        except Unavailable:
            if cached is not None:  # stale-if-error: keep serving known tokens
                return cached.principal
            raise
        principal = None if found is None else Principal(found[0], frozenset(found[1]))
        if len(self._cache) >= MAX_CACHED:  # bounded: random bad tokens cannot grow it
            self._cache.clear()
        self._cache[token_hash] = _Cached(principal, now + self.cache_seconds)
        return principal

    def forget(self) -> None:
        """Drop cached answers (after a revocation)."""
        self._cache.clear()


class AuthMiddleware:
    """Authenticates /api/v1 requests before anything else runs; 401 problem if it fails.
    The principal is left in the request state for the routes (and the fast path)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(API_PREFIX):
            authenticator: Authenticator | None = getattr(scope["app"].state, "auth", None)
            if authenticator is not None:
                header = _header(scope, b"authorization")
                try:
                    principal = await authenticator.principal(header)
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


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None
