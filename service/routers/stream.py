"""`GET /api/v1/stream`: the change feed over Server-Sent Events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Request
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.datastructures import State

from cache.stream import CursorAhead, StreamUnavailable
from service.deps import ReadableEnv, ServiceQuery
from service.errors import Unavailable
from service.routers import API_PREFIX
from service.schemas import LAST_EVENT_ID_LENGTH

router = APIRouter(prefix=API_PREFIX, tags=["stream"])


@router.get(
    "/stream",
    response_class=EventSourceResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": (
                "`snapshot` (full state and cursor), then `upsert` / `delete` events whose `id:` "
                "is the cursor `<epoch>:<revision>`; `heartbeat` events keep the connection "
                "observable. Reconnect with `Last-Event-ID` to receive exactly what you missed, "
                "then a `heartbeat` that confirms the resume."
            ),
        },
        503: {"description": "This instance's change feed is down; try another"},
    },
)
async def stream_changes(
    request: Request,
    env: ReadableEnv,
    service: ServiceQuery,
    last_event_id: Annotated[str | None, Header(max_length=LAST_EVENT_ID_LENGTH)] = None,
) -> EventSourceResponse:
    """The environment's flags, its global configurations and the service's own, live."""
    try:
        owner = getattr(request.state, "token_hash", None)
        return await stream_response(request.app.state, env, service, last_event_id, owner)
    except CursorAhead:
        raise Unavailable(
            "Last-Event-ID names a revision the read model does not have (Redis may have lost "
            "changes); it is being checked against the database and rebuilt: retry"
        ) from None
    except StreamUnavailable:
        raise Unavailable("this instance cannot stream changes right now; retry") from None


async def stream_response(
    state: State, env: str, service: str | None, last_event_id: str | None, owner: str | None
) -> EventSourceResponse:
    """The stream of validated arguments; StreamUnavailable if the change feed is down.

    Shared by the route and by the fast path (service/fast.py), which serves plainly valid
    stream requests without FastAPI's routing: a FastAPI route keeps its Request, dependency
    results, exit stacks and exception wrappers alive for the whole stream, measured at
    ~11 KiB per idle connection."""
    settings = state.settings
    stream = await state.streams.open(env, service, last_event_id, owner)

    async def events() -> AsyncIterator[ServerSentEvent]:
        first = True
        async for event in stream.events():
            yield ServerSentEvent(
                data=event.data,
                event=event.event,
                id=event.id or None,
                retry=settings.sse_retry_ms if first else None,
            )
            first = False
        # Closed by the server (shutdown, resync, too slow, feed lost, token revoked): come back
        # soon (a revoked token is then refused with 401).
        yield ServerSentEvent(
            comment=f"closed: {stream.subscriber.closed or 'resync'}", retry=settings.sse_retry_ms
        )

    return EventSourceResponse(
        events(),
        ping=0,  # heartbeats come from the stream itself (ChangeStream.events)
        send_timeout=settings.sse_send_timeout_seconds,
        shutdown_event=state.shutdown,
        shutdown_grace_period=1.0,
        client_close_handler_callable=None,
    )
