"""Reading a request header straight from an ASGI scope (the middlewares run before Starlette
builds a Request, and a plain loop over the few headers is the cheapest lookup)."""

from __future__ import annotations

from starlette.types import Scope


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of header `name` (lower-case bytes), decoded as latin-1."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None
