"""The compiled targeting of one environment: its flags and segments as aurora_client.targeting
objects, ready to evaluate.

Compiling (parsing rules, constraints, regexes, versions, weights) happens when an item is
applied, never per request (issue 10): the replica keeps one `Targets` per environment and
recompiles only the item a change brings. The Redis and SQL read tiers compile what they read
with the same functions. Flags without rules or prerequisites also keep today's FlagState
(`plain`): whether they are on is exactly today's aurora_client.evaluation (variants only pick
a variant), so their checks take that path, reasons included, building nothing per request.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aurora_client.events import flag_state
from aurora_client.state import FlagState
from aurora_client.targeting import Flag, Segment

log = logging.getLogger(__name__)

Item = dict[str, Any]


def is_plain(item: Mapping[str, Any]) -> bool:
    """A flag whose enablement is today's rollout: no rules, no prerequisites (its variants, if
    any, only choose a variant; docs/TARGETING.md)."""
    return not (item.get("rules") or item.get("prerequisites"))


@dataclass(slots=True)
class Targets:
    """What evaluating any flag of one environment needs. `items` maps every flag key to its
    item; `flags` to its compiled Flag (a flag whose item cannot be compiled is in `items` only:
    it evaluates to an ERROR result); `segments` every segment name to its compiled Segment;
    `plain` the FlagState of each flag without rules or prerequisites."""

    items: dict[str, Item] = field(default_factory=dict)
    flags: dict[str, Flag] = field(default_factory=dict)
    segments: dict[str, Segment] = field(default_factory=dict)
    plain: dict[str, FlagState] = field(default_factory=dict)

    @classmethod
    def of(cls, flags: Iterable[Item], segments: Iterable[Item]) -> Targets:
        targets = cls()
        for item in flags:
            targets.set_flag(str(item["flag_key"]), item)
        for item in segments:
            targets.set_segment(str(item["name"]), item)
        return targets

    def set_flag(self, key: str, item: Item | None) -> None:
        """The flag's new item (None: deleted), compiled now."""
        self.plain.pop(key, None)
        self.flags.pop(key, None)
        if item is None:
            self.items.pop(key, None)
            return
        self.items[key] = item
        try:
            if is_plain(item):
                self.plain[key] = flag_state(item)
            self.flags[key] = Flag.of(item)
        except (KeyError, TypeError, ValueError) as exc:
            # Stored items were validated on write; an item this version cannot read (written
            # by a newer one, say) must not stop the feed: it answers ERROR until replaced.
            log.error("flag %r cannot be compiled (%s: %s)", key, type(exc).__name__, exc)

    def set_segment(self, name: str, item: Item | None) -> None:
        self.segments.pop(name, None)
        if item is None:
            return
        try:
            self.segments[name] = Segment.of(item)
        except (KeyError, TypeError, ValueError) as exc:
            # A rule that names a segment it cannot find does not match, as in Unleash.
            log.error("segment %r cannot be compiled (%s: %s)", name, type(exc).__name__, exc)
