"""Collection paths answer with or without their trailing slash.

The API's collections are `/api/v1/configurations/` and the like. Starlette would answer the
path without its slash with a 307 redirect: to `http://` behind a TLS-terminating proxy (the
app sees plain HTTP), and for a POST whose body many clients do not send again. This middleware
serves the slashless path as the collection itself, so the route, its metrics label and its
logs are the same either way.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send


class CollectionSlash:
    def __init__(self, app: ASGIApp, collections: Iterable[str]) -> None:
        self.app = app
        self.slashless = frozenset(path.rstrip("/") for path in collections)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in self.slashless:
            # In place, as Starlette's own routing does: the outer layers (metrics and logs)
            # read the matched route from this very scope afterwards.
            scope["path"] += "/"
            scope["raw_path"] = scope["path"].encode()
        await self.app(scope, receive, send)
