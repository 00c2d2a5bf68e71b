"""The state of one configuration or flag, as the server stores it and every client sees it.

These frozen records are the vocabulary of the change feed: a change event carries one of them as
its new state. They hold only what evaluation and scope resolution need, plus the version that
orders changes of the same item.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeAlias

#: Any JSON document: the type of a configuration value at the edges of the system.
JsonValue: TypeAlias = Any


def canonical_json(value: JsonValue) -> str:
    """One spelling per JSON document: keys sorted, no spaces. 1, 1.0 and true stay three
    different texts, though Python's == calls them one value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def same_json(a: JsonValue, b: JsonValue) -> bool:
    """Equal as JSON documents (the order of an object's keys does not matter). The server
    decides with this whether a write changes a value, and the SDK whether an event changes
    what `get()` returns: one rule, so neither drops a change the other makes (issue 9)."""
    return a is b or canonical_json(a) == canonical_json(b)


class Scope(StrEnum):
    """Which scope a resolved configuration value came from."""

    SERVICE = "service"
    GLOBAL = "global"


@dataclass(frozen=True, slots=True)
class ConfigState:
    key: str
    environment: str
    service_name: str | None  # None: the environment's global value
    value: JsonValue
    version: int


@dataclass(frozen=True, slots=True)
class FlagState:
    key: str
    environment: str
    is_enabled: bool
    rollout_percentage: int
    version: int


@dataclass(frozen=True, slots=True)
class Resolved:
    config: ConfigState
    scope: Scope


def resolve_value(
    lookup: Callable[[str | None], ConfigState | None], service_name: str | None
) -> Resolved | None:
    """Resolve a key for a service: the service's own value, else the environment's global one.

    `lookup(service_name)` returns the configuration stored in exactly that scope (None = global).
    The one fallback rule, shared by the SQL reads, the read model and the SDK.
    """
    if service_name is not None:
        own = lookup(service_name)
        if own is not None:
            return Resolved(own, Scope.SERVICE)
    shared = lookup(None)
    return Resolved(shared, Scope.GLOBAL) if shared is not None else None


def merge_scopes(
    globals_: dict[str, JsonValue], service_values: dict[str, JsonValue]
) -> dict[str, JsonValue]:
    """The flat key → value view of one service: its own values override the globals."""
    return {**globals_, **service_values}
