"""A change as the feed carries it: the event plus its place in the environment's feed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aurora_client.events import ChangeEvent, Cursor


@dataclass(frozen=True, slots=True)
class FeedMessage:
    environment: str
    epoch: str
    revision: int
    event: ChangeEvent | None  # None for a resync notice (the read model was rebuilt)
    event_json: str  # the event encoded once, sent as is to every SSE subscriber

    @property
    def cursor(self) -> Cursor:
        return Cursor(self.epoch, self.revision)

    @classmethod
    def parse(cls, raw: str | bytes) -> FeedMessage:
        text = raw.decode() if isinstance(raw, bytes) else raw
        data: dict[str, Any] = json.loads(text)
        event = data.get("event")
        return cls(
            environment=data["environment"],
            epoch=data["epoch"],
            revision=int(data["revision"]),
            event=ChangeEvent.from_dict(event) if event else None,
            event_json=json.dumps(event, separators=(",", ":")) if event else "null",
        )
