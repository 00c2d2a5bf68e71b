"""The client's local copy of one environment (its flags, its globals and its own values).

Written only by the client's stream task; read from any thread. Reads are single dict lookups,
and whole dicts are swapped in on a snapshot, so a reader never sees a half-applied state.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from aurora_client.events import ChangeEvent, config_state, flag_state
from aurora_client.state import FlagState, JsonValue, same_json

_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class Change:
    """What a listener is told: a flag, or a configuration value as this service sees it
    (after the service → global fallback), changed. `new` is None when it is gone."""

    kind: Literal["config", "flag"]
    key: str
    old: JsonValue | FlagState | None
    new: JsonValue | FlagState | None


def _flag_item(flag: FlagState) -> dict[str, Any]:
    return {
        "flag_key": flag.key,
        "environment": flag.environment,
        "is_enabled": flag.is_enabled,
        "rollout_percentage": flag.rollout_percentage,
        "version": flag.version,
    }


def _field(service_name: str | None, key: str) -> str:
    return f"{service_name or ''}|{key}"


def why_unusable(data: Any, environment: str, service_name: str | None) -> str | None:
    """Why a saved or bootstrap state cannot seed this client's copy, or None if it can: it must
    be a snapshot-shaped JSON object, and of this environment and service where it says so."""
    if not isinstance(data, Mapping):
        return f"not a JSON object but {type(data).__name__}"
    if not isinstance(data.get("cursor"), str | None):
        return "its cursor is not a string"
    if data.get("environment", environment) != environment:
        return f"it is for environment {data['environment']!r}"
    if data.get("service_name", service_name) != service_name:
        return f"it is for service {data['service_name']!r}"
    for field in ("configs", "flags"):
        items = data.get(field, [])
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            return f"{field} is not a list of objects"
        foreign = {item.get("environment", environment) for item in items} - {environment}
        if foreign:
            return f"{field} of environment {sorted(map(str, foreign))}"
    return None


class LocalCache:
    def __init__(self, environment: str, service_name: str | None) -> None:
        self.environment = environment
        self.service_name = service_name
        self.flags: dict[str, FlagState] = {}
        self.values: dict[str, JsonValue] = {}  # key -> the value this service sees
        self._configs: dict[str, dict[str, Any]] = {}  # "<service>|<key>" -> item
        self._versions: dict[str, int] = {}
        self.cursor: str | None = None
        self.loaded = False

    # -- loading ---------------------------------------------------------------------------

    def load(self, snapshot: Mapping[str, Any]) -> list[Change]:
        """Replace everything with a snapshot (from the stream, a bootstrap or a cache file)."""
        configs = {
            _field(item.get("service_name"), item["config_key"]): item
            for item in snapshot.get("configs", ())
            if item.get("service_name") in (None, self.service_name)
        }
        flags = {item["flag_key"]: flag_state(item) for item in snapshot.get("flags", ())}
        versions = {f"c|{name}": int(item["version"]) for name, item in configs.items()}
        versions.update({f"f|{key}": flag.version for key, flag in flags.items()})
        values = self._resolve_all(configs)
        changes = self._diff(self.values, values, "config") + self._diff(self.flags, flags, "flag")
        self._configs, self._versions = configs, versions
        self.values, self.flags = values, flags  # swapped whole: readers see old or new
        self.cursor = snapshot.get("cursor")
        self.loaded = True
        return changes

    def apply(self, event: ChangeEvent, cursor: str | None) -> list[Change]:
        """Apply one change, by version (older or repeated ones are ignored)."""
        if event.kind == "config" and event.service_name not in (None, self.service_name):
            self.cursor = cursor or self.cursor
            return []
        # Parse the new state before touching anything: a malformed event raises and leaves the
        # copy and the cursor as they were, so a resume asks for it again.
        new_flag = None
        if event.state is not None:
            if event.kind == "flag":
                new_flag = flag_state(event.state)
            else:
                config_state(event.state)
        name = _field(event.service_name, event.key) if event.kind == "config" else event.key
        version_key = f"{'c' if event.kind == 'config' else 'f'}|{name}"
        self.cursor = cursor or self.cursor
        if self._versions.get(version_key, 0) >= event.version:
            return []
        self._versions[version_key] = event.version
        if event.kind == "flag":
            old_flag = self.flags.get(event.key)
            if new_flag is None:
                self.flags.pop(event.key, None)
                return [Change("flag", event.key, old_flag, None)]
            self.flags[event.key] = new_flag
            return [Change("flag", event.key, old_flag, new_flag)]
        if event.state is None:
            self._configs.pop(name, None)
        else:
            self._configs[name] = event.state
        return self._re_resolve(event.key)

    def snapshot(self) -> dict[str, Any]:
        """The state in the stream's snapshot shape, for a cache file."""
        return {
            "cursor": self.cursor,
            "environment": self.environment,
            "service_name": self.service_name,
            "configs": list(self._configs.values()),
            "flags": [_flag_item(flag) for flag in self.flags.values()],
        }

    # -- resolution ------------------------------------------------------------------------

    def _resolve_all(self, configs: dict[str, dict[str, Any]]) -> dict[str, JsonValue]:
        values: dict[str, JsonValue] = {}
        own: dict[str, JsonValue] = {}
        for item in configs.values():
            target = values if item.get("service_name") is None else own
            target[item["config_key"]] = config_state(item).value
        values.update(own)  # the service's own values override the globals
        return values

    def _re_resolve(self, key: str) -> list[Change]:
        own = self._configs.get(_field(self.service_name, key)) if self.service_name else None
        item = own or self._configs.get(_field(None, key))
        old = self.values.get(key, _MISSING)
        if item is None:
            if old is _MISSING:
                return []
            del self.values[key]
            return [Change("config", key, old, None)]
        new = item["config_value"]
        if old is not _MISSING and same_json(old, new):
            return []
        self.values[key] = new
        return [Change("config", key, None if old is _MISSING else old, new)]

    @staticmethod
    def _diff(
        old: Mapping[str, Any], new: Mapping[str, Any], kind: Literal["config", "flag"]
    ) -> list[Change]:
        # Values compare as JSON, as the server does: 1 -> true is a change, though 1 == True.
        same = same_json if kind == "config" else operator.eq
        changes = [
            Change(kind, key, old.get(key), value)
            for key, value in new.items()
            if key not in old or not same(old[key], value)
        ]
        changes += [Change(kind, key, value, None) for key, value in old.items() if key not in new]
        return changes
