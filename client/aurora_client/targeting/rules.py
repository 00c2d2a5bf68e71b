"""Rules (Unleash: strategies): constraints, segments, a rollout and optional rule variants.

A rule matches a context when all its constraints hold, every constraint of each segment it names
holds, and the context is within its rollout: murmur3_x86_32("<group_id>:<stickiness value>",
seed 0) % 100 + 1 <= percentage. Stickiness `default` is userId, else sessionId, else a random
draw; `random` is always a draw; any other name is that context field, and a context without it is
not in the rollout (Unleash's gradualRolloutUserId at 100 % is off for a caller without a userId).

A rule without a group id (`group_id: null`, which only an import of a flexibleRollout without
`groupId` stores: a native write fills the flag key) hashes with the key of the flag being
evaluated. That is its own key, except in a prerequisite check, where Unleash's engine hashes a
parent's such rule with the dependent (child) flag's key: `match_as` does that. Its variants
always hash with its own flag's key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mmh3 import hash as murmur3

from aurora_client.targeting.operators import (
    Check,
    Constraint,
    Fields,
    compile_constraint,
    random_bucket,
)
from aurora_client.targeting.segments import Segment
from aurora_client.targeting.variants import VariantSet, VariantSpec

FULL = 100


def rollout_bucket(group_id: str, value: str) -> int:
    """The bucket 1..100 of a stickiness value in a group (Unleash's normalized hash)."""
    return murmur3(group_id + ":" + value, 0, False) % 100 + 1


class Rule:
    """One rule compiled for evaluation. Immutable by convention (built only by `of`)."""

    __slots__ = (
        "borrows_key",
        "broken",
        "checks",
        "constraints",
        "gate",
        "group_id",
        "id",
        "in_rollout",
        "index",
        "match",
        "percentage",
        "segments",
        "stickiness",
        "variants",
    )

    def __init__(
        self,
        *,
        index: int,
        rule_id: str,
        constraints: tuple[Constraint, ...],
        segments: tuple[str, ...],
        percentage: int,
        stickiness: str,
        group_id: str,
        variants: VariantSet | None,
        broken: str | None,
        borrows_key: bool = False,
    ) -> None:
        self.index = index
        self.id = rule_id
        self.constraints = constraints
        self.checks = tuple(c.check for c in constraints)
        self.segments = segments
        self.percentage = percentage
        self.stickiness = stickiness
        self.group_id = group_id
        self.variants = variants
        self.broken = broken
        self.in_rollout = _rollout(percentage, stickiness, group_id)
        self.match = _matcher(self.checks, segments, self.in_rollout)
        #: No group id of its own, and the rollout hashes: evaluated on behalf of another
        #: flag (a prerequisite check) it hashes with that flag's key (match_as).
        self.borrows_key = (
            borrows_key and 0 < percentage < FULL and stickiness != "random" and broken is None
        )
        #: Constraints and segments without the rollout (match_as), for such a rule only.
        self.gate = _matcher(self.checks, segments, _always) if self.borrows_key else None

    @classmethod
    def of(cls, index: int, data: Mapping[str, Any], flag_key: str) -> Rule:
        constraints = tuple(
            compile_constraint(c) for c in data.get("constraints") or () if isinstance(c, Mapping)
        )
        rollout = data.get("rollout")
        rollout = rollout if isinstance(rollout, Mapping) else {}
        percentage = rollout.get("percentage", FULL)
        broken = next(
            (
                f"constraint {i}: {c.broken}"
                for i, c in enumerate(constraints)
                if c.broken is not None
            ),
            None,
        )
        if (
            isinstance(percentage, bool)
            or not isinstance(percentage, int)
            or not (0 <= percentage <= FULL)
        ):
            broken = broken or f"rollout percentage {percentage!r} is not an integer 0..100"
            percentage = 0
        stickiness = str(rollout.get("stickiness") or "default")
        declared = rollout.get("group_id")
        group_id = declared if isinstance(declared, str) else flag_key
        specs = [VariantSpec.of(v) for v in data.get("variants") or () if isinstance(v, Mapping)]
        rule_id = data.get("id")
        return cls(
            index=index,
            rule_id=rule_id if isinstance(rule_id, str) else f"r{index + 1}",
            constraints=constraints,
            segments=tuple(str(s) for s in data.get("segments") or ()),
            percentage=percentage,
            stickiness=stickiness,
            group_id=group_id,
            variants=VariantSet(specs, group_id, stickiness) if specs else None,
            broken=broken,
            borrows_key=not isinstance(declared, str),
        )

    def matches(self, fields: Fields, segments: Mapping[str, Segment]) -> bool:
        """Whether the rule holds for a context's fields (its segments must be present: the
        flag checked them)."""
        return self.match(fields, segments)

    def match_as(self, fields: Fields, segments: Mapping[str, Segment], flag_key: str) -> bool:
        """`match` when evaluated on behalf of the flag `flag_key` (a prerequisite check: the
        dependent flag's key): a rule without a group id of its own hashes with that key, as
        Unleash's engine does (its rollout takes the group id from the evaluated toggle)."""
        if self.gate is None:
            return self.match(fields, segments)
        if not self.gate(fields, segments):
            return False
        return _in_rollout(self.percentage, self.stickiness, flag_key, fields)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "constraints": [c.to_dict() for c in self.constraints],
            "segments": list(self.segments),
            "rollout": {
                "percentage": self.percentage,
                "stickiness": self.stickiness,
                "group_id": self.group_id,
            },
            "variants": [v.to_dict() for v in self.variants.variants] if self.variants else [],
        }


def _always(_: Fields) -> bool:
    return True


def _never(_: Fields) -> bool:
    return False


Matcher = Callable[[Fields, Mapping[str, Segment]], bool]


def _matcher(checks: tuple[Check, ...], names: tuple[str, ...], in_rollout: Check) -> Matcher:
    """The rule as one function: constraints, then segments, then the rollout."""
    if not names:

        def plain(fields: Fields, segments: Mapping[str, Segment]) -> bool:
            for check in checks:
                if not check(fields):
                    return False
            return in_rollout(fields)

        return plain

    def with_segments(fields: Fields, segments: Mapping[str, Segment]) -> bool:
        for check in checks:
            if not check(fields):
                return False
        for name in names:
            for check in segments[name].checks:
                if not check(fields):
                    return False
        return in_rollout(fields)

    return with_segments


def stickiness_value(stickiness: str, fields: Fields) -> str | None:
    """The value a rollout hashes (None: a random draw for default/random, else not in)."""
    if stickiness == "default":
        value = fields.get("userId")
        return value if value is not None else fields.get("sessionId")
    if stickiness == "random":
        return None
    return fields.get(stickiness)


def _rollout(percentage: int, stickiness: str, group_id: str) -> Check:
    if percentage <= 0:
        return _never
    drawn = stickiness in ("default", "random")
    if percentage >= FULL and drawn:
        return _always  # every bucket, even a random one, is within 100 %
    if stickiness == "random":
        return lambda _: random_bucket() <= percentage
    if stickiness == "default":

        def default(fields: Fields) -> bool:
            value = fields.get("userId")
            if value is None:
                value = fields.get("sessionId")
            if value is None:
                return random_bucket() <= percentage
            return murmur3(group_id + ":" + value, 0, False) % 100 + 1 <= percentage

        return default

    def sticky(fields: Fields) -> bool:
        value = fields.get(stickiness)
        if value is None:
            return False
        return murmur3(group_id + ":" + value, 0, False) % 100 + 1 <= percentage

    return sticky


def _in_rollout(percentage: int, stickiness: str, group_id: str, fields: Fields) -> bool:
    """The rollout `_rollout` compiles, for a group id known only at the call."""
    value = stickiness_value(stickiness, fields)
    if value is None:
        return stickiness == "default" and random_bucket() <= percentage
    return murmur3(group_id + ":" + value, 0, False) % 100 + 1 <= percentage
