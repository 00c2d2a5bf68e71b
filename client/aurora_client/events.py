"""The change feed's wire format, shared by the server and the SDK.

A change is one event: kind, op, key, environment, service_name, version and the item's new state
(None for a delete). Versions order the changes of one item; a consumer applies an event only if
its version is newer than what it holds, so replays and reordering are harmless. A cursor
`<epoch>:<revision>` orders the events of one environment's feed; a new epoch means the read model
was rebuilt and consumers must resynchronise from a snapshot.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from aurora_client.state import ConfigState, FlagState

Kind = Literal["config", "flag", "segment"]
Op = Literal["upsert", "delete"]


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    kind: Kind
    op: Op
    key: str
    environment: str
    service_name: str | None
    version: int
    state: dict[str, Any] | None  # the item as the API shows it; None when deleted

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "op": self.op,
            "key": self.key,
            "environment": self.environment,
            "service_name": self.service_name,
            "version": self.version,
            "state": self.state,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChangeEvent:
        return cls(
            kind=data["kind"],
            op=data["op"],
            key=data["key"],
            environment=data["environment"],
            service_name=data.get("service_name"),
            version=int(data["version"]),
            state=data.get("state"),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))


@dataclass(frozen=True, slots=True, order=True)
class Cursor:
    """A position in one environment's change feed."""

    epoch: str
    revision: int

    def __str__(self) -> str:
        return f"{self.epoch}:{self.revision}"

    @classmethod
    def parse(cls, text: str) -> Cursor | None:
        epoch, sep, revision = text.strip().rpartition(":")
        if not sep or not epoch or not revision.isdecimal() or len(revision) > 18:
            return None
        return cls(epoch, int(revision))


def config_state(item: dict[str, Any]) -> ConfigState:
    """The evaluation view of a configuration item (as the API and the feed carry it)."""
    return ConfigState(
        key=item["config_key"],
        environment=item["environment"],
        service_name=item.get("service_name"),
        value=item.get("config_value"),
        version=int(item["version"]),
    )


def flag_state(item: dict[str, Any]) -> FlagState:
    return FlagState(
        key=item["flag_key"],
        environment=item["environment"],
        is_enabled=bool(item["is_enabled"]),
        rollout_percentage=int(item["rollout_percentage"]),
        version=int(item["version"]),
    )
