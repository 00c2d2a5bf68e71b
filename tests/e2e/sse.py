"""A small synchronous SSE subscriber for tests (httpx + httpx-sse), every read bounded."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
from httpx_sse import ServerSentEvent, connect_sse


class StreamEnded(Exception):
    pass


class Subscription:
    def __init__(self, base_url: str, last_event_id: str | None = None, **params: str) -> None:
        self.client = httpx.Client(timeout=httpx.Timeout(5.0))
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        self._context = connect_sse(
            self.client, "GET", f"{base_url}/api/v1/stream", params=params, headers=headers
        )
        self.source = self._context.__enter__()
        self.status = self.source.response.status_code
        self._events: Iterator[ServerSentEvent] = (
            self.source.iter_sse() if self.status == 200 else iter(())
        )
        self.last_id: str | None = last_event_id
        self.retry: int | None = None

    def next(self, within: float = 5.0, *, heartbeats: bool = False) -> ServerSentEvent:
        """The next event (heartbeats skipped unless asked for), within `within` seconds."""
        deadline = time.monotonic() + within
        for sse in self._events:
            if sse.retry is not None:
                self.retry = sse.retry
            if sse.event == "heartbeat" and not heartbeats:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no event within {within}s")
                continue
            if not sse.event and not sse.data:
                continue  # the closing retry hint
            if sse.event in {"snapshot", "upsert", "delete"}:
                self.last_id = sse.id
            return sse
        raise StreamEnded

    def changes(self, count: int, within: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + within
        found = []
        while len(found) < count:
            sse = self.next(max(0.1, deadline - time.monotonic()))
            assert sse.event in {"upsert", "delete"}, f"expected a change, got {sse.event}"
            found.append({"op": sse.event, "id": sse.id, **json.loads(sse.data)})
        return found

    def close(self) -> None:
        self._context.__exit__(None, None, None)
        self.client.close()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
