"""The reference: a bare Starlette app on the same uvicorn, returning a constant JSON (for a GET,
and for a POST after parsing its JSON body), and a bare sse-starlette endpoint that sends one
event and idles (the memory reference per connection)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def constant(_request: Request) -> JSONResponse:
    return JSONResponse({"enabled": True})


async def echo(request: Request) -> JSONResponse:
    """The reference for a POST: reads and parses the JSON body, answers a constant."""
    await request.json()
    return JSONResponse({"enabled": True})


async def sse(_request: Request) -> EventSourceResponse:
    async def events() -> AsyncIterator[dict[str, str]]:
        yield {"event": "snapshot", "data": "{}"}
        await anyio.sleep_forever()

    return EventSourceResponse(events(), ping=15)


app = Starlette(
    routes=[Route("/check", constant), Route("/echo", echo, methods=["POST"]), Route("/sse", sse)]
)
