"""The in-process replica of the read model: plain dicts, answered without any I/O.

Fed by the same change messages as Redis (applied by version, like the Lua script), and trusted
per environment only while it is in step: hydrated from a snapshot, its subscription live, and
every revision since applied with no gap. Anything else makes it untrusted until resynchronised,
and the read path then goes to Redis.

Flags and segments are also held compiled for evaluation (cache/targets.py): each is compiled
when a change or a snapshot brings it, so a check on the hot path parses nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from aurora_client.events import ChangeEvent

from cache.keys import config_field, version_field
from cache.messages import FeedMessage
from cache.read_model import Snapshot
from cache.targets import Targets

Item = dict[str, Any]


@dataclass
class EnvironmentCopy:
    epoch: str
    revision: int
    configs: dict[str, Item] = field(default_factory=dict)  # config_field -> item
    segments: dict[str, Item] = field(default_factory=dict)  # name -> item
    versions: dict[str, int] = field(default_factory=dict)
    trusted: bool = True
    updated: float = field(default_factory=time.monotonic)
    targets: Targets = field(default_factory=Targets)  # flag items, compiled flags and segments

    @property
    def flags(self) -> dict[str, Item]:
        """flag key -> item (held by `targets`, next to the compiled flags)."""
        return self.targets.items

    def apply_event(self, event: ChangeEvent) -> bool:
        """Apply by version: True if it changed anything. A flag or a segment is compiled here."""
        key = config_field(event.service_name, event.key) if event.kind == "config" else event.key
        vfield = version_field(event.kind, key)
        if self.versions.get(vfield, 0) >= event.version:
            return False
        self.versions[vfield] = event.version
        if event.kind == "flag":
            self.targets.set_flag(key, event.state)
        elif event.kind == "segment":
            self.targets.set_segment(key, event.state)
            _store(self.segments, key, event.state)
        else:
            _store(self.configs, key, event.state)
        return True


def _store(table: dict[str, Item], key: str, state: Item | None) -> None:
    if state is None:
        table.pop(key, None)
    else:
        table[key] = state


class Replica:
    def __init__(self) -> None:
        self._envs: dict[str, EnvironmentCopy] = {}

    # -- trust -----------------------------------------------------------------------------

    def copy(self, environment: str) -> EnvironmentCopy | None:
        """The environment's copy if it can be trusted right now, else None."""
        env = self._envs.get(environment)
        return env if env is not None and env.trusted else None

    def trust(self, environment: str) -> None:
        """The copy is known to be in step again (caught up by replaying the feed)."""
        self._envs[environment].trusted = True

    def distrust(self, environment: str | None = None) -> None:
        for name, env in self._envs.items():
            if environment is None or name == environment:
                env.trusted = False

    def position(self, environment: str) -> tuple[str, int] | None:
        env = self._envs.get(environment)
        return None if env is None else (env.epoch, env.revision)

    def status(self) -> dict[str, dict[str, Any]]:
        return {
            name: {
                "epoch": env.epoch,
                "revision": env.revision,
                "trusted": env.trusted,
                "configs": len(env.configs),
                "flags": len(env.flags),
                "segments": len(env.segments),
                "seconds_since_change": round(time.monotonic() - env.updated, 3),
            }
            for name, env in self._envs.items()
        }

    # -- feeding ---------------------------------------------------------------------------

    def hydrate(self, environment: str, snapshot: Snapshot, *, trusted: bool = True) -> None:
        """Replace the environment's copy; `trusted=False` until its source is proven."""
        copy = EnvironmentCopy(
            epoch=snapshot.epoch,
            revision=snapshot.revision,
            versions=dict(snapshot.versions),
            trusted=trusted,
            targets=Targets.of(snapshot.flags, snapshot.segments),
        )
        for item in snapshot.configs:
            name = config_field(item.get("service_name"), item["config_key"])
            copy.configs[name] = item
            copy.versions[version_field("config", name)] = int(item["version"])
        for item in snapshot.flags:
            copy.versions[version_field("flag", item["flag_key"])] = int(item["version"])
        for item in snapshot.segments:
            copy.segments[item["name"]] = item
            copy.versions[version_field("segment", item["name"])] = int(item["version"])
        self._envs[environment] = copy

    def follow(self, message: FeedMessage) -> bool:
        """Apply the next message of the feed. False (and untrusted) if it does not follow on
        from what the replica holds: another epoch, or a revision gap."""
        env = self._envs.get(message.environment)
        if env is None or env.epoch != message.epoch or message.revision > env.revision + 1:
            if env is not None:
                env.trusted = False
            return False
        if message.revision <= env.revision:
            return True  # already applied (a local write, or a replayed message)
        env.revision = message.revision
        if message.event is not None:
            env.apply_event(message.event)
        env.updated = time.monotonic()
        return True

    def apply_local(self, event: ChangeEvent, revision: int) -> None:
        """A write this instance just applied to Redis: visible here before the write answers
        (read-your-writes). Item state goes by version; the revision advances only in order."""
        env = self._envs.get(event.environment)
        if env is None:
            return
        env.apply_event(event)
        env.updated = time.monotonic()
        if revision == env.revision + 1:
            env.revision = revision
