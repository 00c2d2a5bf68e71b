"""`GET /api/v1/stream`: the change feed over Server-Sent Events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from cache.stream import StreamUnavailable, heartbeat_event
from service.deps import ReadableEnv, ServiceQuery
from service.errors import Unavailable
from service.routers import API_PREFIX

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
    last_event_id: Annotated[str | None, Header(max_length=200)] = None,
) -> EventSourceResponse:
    """The environment's flags, its global configurations and the service's own, live."""
    state = request.app.state
    settings = state.settings
    try:
        stream = state.streams.open(env, service, last_event_id)
    except StreamUnavailable:
        raise Unavailable("this instance cannot stream changes right now; retry") from None

    async def events() -> AsyncIterator[ServerSentEvent]:
        first = True
        async for event in stream.events():
            yield ServerSentEvent(
                data=event.data,
                event=event.event,
                id=event.id,
                retry=settings.sse_retry_ms if first else None,
            )
            first = False
        # Closed by the server (shutdown, resync, too slow, feed lost): come back soon.
        yield ServerSentEvent(
            comment=f"closed: {stream.subscriber.closed or 'resync'}", retry=settings.sse_retry_ms
        )

    def heartbeat() -> ServerSentEvent:
        position = state.replica.position(env)
        cursor = f"{position[0]}:{position[1]}" if position else None
        beat = heartbeat_event(cursor, settings.sse_heartbeat_seconds)
        return ServerSentEvent(event=beat.event, data=beat.data)

    return EventSourceResponse(
        events(),
        ping=settings.sse_heartbeat_seconds,
        ping_message_factory=heartbeat,
        send_timeout=settings.sse_send_timeout_seconds,
        shutdown_event=state.shutdown,
        shutdown_grace_period=1.0,
        client_close_handler_callable=None,
    )
