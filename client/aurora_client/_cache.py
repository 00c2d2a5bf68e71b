"""The client's local copy of one environment (its flags, segments, globals and own values).

Written only by the client's stream task; read from any thread. Reads are single dict lookups,
and whole dicts are swapped in on a snapshot, so a reader never sees a half-applied state.

Flags and segments are compiled (aurora_client.targeting) once, when they arrive, never per
check. A flag as it was before targeting (no rules, variants or prerequisites) is also kept in
`plain`, so `is_enabled(key, user_id)` on it stays today's single hash (issue 10).
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from aurora_client.events import ChangeEvent, config_state, flag_state
from aurora_client.state import FlagState, JsonValue, same_json
from aurora_client.targeting import Flag, Segment

log = logging.getLogger("aurora_client")

_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class Change:
    """What a listener is told: a flag, or a configuration value as this service sees it
    (after the service → global fallback), changed. `new` is None when it is gone.

    A segment's change is reported as its item (a dict; None when deleted): every flag whose
    rules name it may now answer differently."""

    kind: Literal["config", "flag", "segment"]
    key: str
    old: JsonValue | FlagState | None
    new: JsonValue | FlagState | None


@dataclass(frozen=True, slots=True)
class Targets:
    """Every flag and segment, compiled for evaluation. One object, so a snapshot swaps both at
    once and a check never pairs new flags with old segments."""

    flags: dict[str, Flag]
    segments: dict[str, Segment]


def _compile_flag(item: Mapping[str, Any]) -> Flag:
    _lists_of_objects(item, "rules", "variants", "prerequisites")
    return Flag.of(item)


def _compile_segment(item: Mapping[str, Any]) -> Segment:
    if not isinstance(item.get("name"), str):
        raise TypeError(f"a segment's name is {item.get('name')!r}")
    _lists_of_objects(item, "constraints")
    return Segment.of(item)


def _lists_of_objects(item: Mapping[str, Any], *fields: str) -> None:
    """Refuse an item of the wrong shape, as a bad event: the server sends these lists (or, before
    targeting, none), and `Flag.of` / `Segment.of` would skip what is not an object (they are
    lenient for Unleash's sake), which would make a garbled rule silently match everyone."""
    for field in fields:
        value = item.get(field, [])
        if not isinstance(value, list) or not all(isinstance(entry, dict) for entry in value):
            raise TypeError(f"{field} is not a list of objects")


def is_plain(item: Mapping[str, Any]) -> bool:
    """A flag as it was before targeting: no rules, no variants, no prerequisites."""
    return not (item.get("rules") or item.get("variants") or item.get("prerequisites"))


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
    for field in ("configs", "flags", "segments"):
        items = data.get(field, [])  # a state saved before segments existed has none
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
        self.plain: dict[str, FlagState] = {}  # the flags as they were before targeting
        self.targets = Targets({}, {})
        self.values: dict[str, JsonValue] = {}  # key -> the value this service sees
        self._configs: dict[str, dict[str, Any]] = {}  # "<service>|<key>" -> item
        self._flag_items: dict[str, dict[str, Any]] = {}  # kept as received, for the state file
        self._segment_items: dict[str, dict[str, Any]] = {}
        self._versions: dict[str, int] = {}
        self.cursor: str | None = None
        self.loaded = False

    # -- loading ---------------------------------------------------------------------------

    def load(self, snapshot: Mapping[str, Any]) -> list[Change]:
        """Replace everything with a snapshot (from the stream, a bootstrap or a cache file).
        A snapshot from before targeting (no segments, flags without rules) loads as well."""
        configs = {
            _field(item.get("service_name"), item["config_key"]): item
            for item in snapshot.get("configs", ())
            if item.get("service_name") in (None, self.service_name)
        }
        flag_items = {item["flag_key"]: item for item in snapshot.get("flags", ())}
        segment_items = {item["name"]: item for item in snapshot.get("segments") or ()}
        flags = {key: flag_state(item) for key, item in flag_items.items()}
        # Compiled before anything is swapped: a malformed item raises and changes nothing.
        targets = Targets(
            {key: _compile_flag(item) for key, item in flag_items.items()},
            {name: _compile_segment(item) for name, item in segment_items.items()},
        )
        versions = {f"c|{name}": int(item["version"]) for name, item in configs.items()}
        versions.update({f"f|{key}": flag.version for key, flag in flags.items()})
        versions.update({f"s|{name}": int(item["version"]) for name, item in segment_items.items()})
        values = self._resolve_all(configs)
        changes = (
            self._diff(self.values, values, "config")
            + self._diff(self.flags, flags, "flag")
            + self._diff(self._segment_items, segment_items, "segment")
        )
        self._configs, self._versions = configs, versions
        self._flag_items, self._segment_items = flag_items, segment_items
        # Swapped whole: readers see old or new. `plain` and `targets` agree on every flag's
        # answer, so a reader between the two swaps still gets a right one.
        self.values, self.flags, self.targets = values, flags, targets
        self.plain = {key: flags[key] for key, item in flag_items.items() if is_plain(item)}
        self.cursor = snapshot.get("cursor")
        self.loaded = True
        return changes

    def apply(self, event: ChangeEvent, cursor: str | None) -> list[Change]:
        """Apply one change, by version (older or repeated ones are ignored)."""
        if event.kind not in ("config", "flag", "segment"):
            # A kind from a newer server: skipped, not fatal, so the stream goes on.
            log.debug("aurora client skips a %r change of %r", event.kind, event.key)
            self.cursor = cursor or self.cursor
            return []
        if event.kind == "config" and event.service_name not in (None, self.service_name):
            self.cursor = cursor or self.cursor
            return []
        # Parse and compile the new state before touching anything: a malformed event raises and
        # leaves the copy and the cursor as they were, so a resume asks for it again.
        new_flag = compiled_flag = compiled_segment = None
        if event.state is not None:
            if event.kind == "flag":
                new_flag, compiled_flag = flag_state(event.state), _compile_flag(event.state)
            elif event.kind == "segment":
                compiled_segment = _compile_segment(event.state)
            else:
                config_state(event.state)
        name = _field(event.service_name, event.key) if event.kind == "config" else event.key
        version_key = f"{event.kind[0]}|{name}"
        self.cursor = cursor or self.cursor
        if self._versions.get(version_key, 0) >= event.version:
            return []
        self._versions[version_key] = event.version
        if event.kind == "flag":
            return [self._apply_flag(event, new_flag, compiled_flag)]
        if event.kind == "segment":
            return [self._apply_segment(event, compiled_segment)]
        if event.state is None:
            self._configs.pop(name, None)
        else:
            self._configs[name] = event.state
        return self._re_resolve(event.key)

    def _apply_flag(
        self, event: ChangeEvent, new: FlagState | None, compiled: Flag | None
    ) -> Change:
        key, old = event.key, self.flags.get(event.key)
        if new is None or compiled is None or event.state is None:
            self.plain.pop(key, None)  # first out of the fast path, then out of everything
            self.targets.flags.pop(key, None)
            self.flags.pop(key, None)
            self._flag_items.pop(key, None)
            return Change("flag", key, old, None)
        self.targets.flags[key] = compiled
        self._flag_items[key] = event.state
        self.flags[key] = new
        if is_plain(event.state):
            self.plain[key] = new
        else:
            self.plain.pop(key, None)
        return Change("flag", key, old, new)

    def _apply_segment(self, event: ChangeEvent, compiled: Segment | None) -> Change:
        old = self._segment_items.get(event.key)
        if compiled is None or event.state is None:
            self.targets.segments.pop(event.key, None)
            self._segment_items.pop(event.key, None)
        else:
            self.targets.segments[event.key] = compiled
            self._segment_items[event.key] = event.state
        return Change("segment", event.key, old, event.state)

    def has_variants(self, flag_key: str) -> bool:
        """Whether the flag has variants of its own or in a rule (so a value beyond on/off)."""
        item = self._flag_items.get(flag_key)
        if item is None:
            return False
        rules = item.get("rules") or ()
        return bool(item.get("variants")) or any(rule.get("variants") for rule in rules)

    def snapshot(self) -> dict[str, Any]:
        """The state in the stream's snapshot shape, for a cache file."""
        return {
            "cursor": self.cursor,
            "environment": self.environment,
            "service_name": self.service_name,
            "configs": list(self._configs.values()),
            "flags": list(self._flag_items.values()),
            "segments": list(self._segment_items.values()),
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
        old: Mapping[str, Any], new: Mapping[str, Any], kind: Literal["config", "flag", "segment"]
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
