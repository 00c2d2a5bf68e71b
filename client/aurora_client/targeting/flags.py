"""Flags compiled for evaluation, and the evaluation itself: enabled, variant and reason.

A flag is on for a context when it is enabled, its prerequisites hold, and one of its rules
matches (the first match also picks the variant). A flag without rules keeps the rollout that
predates targeting: on for a user whose bucket murmur3("<flag_key>:<user_id>") % 100 + 1 is
within `rollout_percentage`, off without a user below 100 %, on for everyone at 100 % (the same
bucket as aurora_client.evaluation, so no cohort moves).

Reasons: DISABLED (switched off), PREREQUISITE_FAILED, TARGETING_MATCH (a rule matched, no
percentage involved), SPLIT (a percentage below 100 or a weighted split of two or more variants
decided), DEFAULT (no rule matched; or a flag without rules at 100 %), ERROR (with a code: a
constraint Unleash could not compile, a missing segment, a prerequisite cycle). A flag in ERROR is
off, as Unleash's engine keeps a flag it cannot compile off.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, NamedTuple

from aurora_client.evaluation import FULL_ROLLOUT, bucket_of
from aurora_client.targeting.context import Context
from aurora_client.targeting.prerequisites import Prerequisite, find_cycle
from aurora_client.targeting.rules import Rule
from aurora_client.targeting.segments import Segment
from aurora_client.targeting.variants import (
    DISABLED_OFF,
    DISABLED_ON,
    Variant,
    VariantSet,
    VariantSpec,
)


class Reason(StrEnum):
    """Why an evaluation came out as it did (OpenFeature's reasons)."""

    DISABLED = "DISABLED"
    PREREQUISITE_FAILED = "PREREQUISITE_FAILED"
    TARGETING_MATCH = "TARGETING_MATCH"
    SPLIT = "SPLIT"
    DEFAULT = "DEFAULT"
    ERROR = "ERROR"


class ErrorCode(StrEnum):
    INVALID_RULE = "INVALID_RULE"  # a constraint or rollout Unleash could not compile
    SEGMENT_NOT_FOUND = "SEGMENT_NOT_FOUND"
    PREREQUISITE_CYCLE = "PREREQUISITE_CYCLE"


class Result(NamedTuple):
    """An evaluation's answer. Immutable; a tuple, because evaluate builds one per call."""

    enabled: bool
    variant: Variant
    reason: Reason
    rule_index: int | None = None
    rule_id: str | None = None
    error_code: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "variant": self.variant.to_dict(),
            "reason": self.reason.value,
            "rule_index": self.rule_index,
            "rule_id": self.rule_id,
            "error_code": self.error_code,
        }


_DISABLED = Result(False, DISABLED_OFF, Reason.DISABLED)
_NO_MATCH = Result(False, DISABLED_OFF, Reason.DEFAULT)


class Flag:
    """A flag item compiled for evaluation. Immutable by convention (built only by `of`)."""

    __slots__ = (
        "enabled",
        "error",
        "key",
        "matchers",
        "percentage",
        "plain",
        "prerequisites",
        "rules",
        "segment_names",
        "variants",
        "version",
    )

    def __init__(
        self,
        *,
        key: str,
        version: int,
        enabled: bool,
        percentage: int,
        rules: tuple[Rule, ...],
        variants: VariantSet | None,
        prerequisites: tuple[Prerequisite, ...],
    ) -> None:
        self.key = key
        self.version = version
        self.enabled = enabled
        self.percentage = percentage
        self.rules = rules
        self.variants = variants
        self.prerequisites = prerequisites
        self.segment_names = tuple(dict.fromkeys(n for r in rules for n in r.segments))
        #: Why Unleash's engine could not compile this flag (then it is off), or None.
        self.error = next(
            (f"rule {r.index} ({r.id}): {r.broken}" for r in rules if r.broken is not None),
            None,
        )
        self.matchers = tuple(rule.match for rule in rules)
        #: Enabled, with rules, without prerequisites or errors: is_enabled's shortest way.
        self.plain = enabled and bool(rules) and not prerequisites and self.error is None

    @classmethod
    def of(cls, item: Mapping[str, Any]) -> Flag:
        """From the flag item JSON (flag_key, is_enabled, rollout_percentage, rules, variants,
        prerequisites, version; a missing list is empty)."""
        key = str(item.get("flag_key") or "")
        percentage = item.get("rollout_percentage", FULL_ROLLOUT)
        version = item.get("version")
        specs = [VariantSpec.of(v) for v in item.get("variants") or () if isinstance(v, Mapping)]
        return cls(
            key=key,
            version=version if isinstance(version, int) else 0,
            enabled=item.get("is_enabled") is True,
            percentage=percentage if isinstance(percentage, int) else FULL_ROLLOUT,
            rules=tuple(
                Rule.of(i, r, key)
                for i, r in enumerate(item.get("rules") or ())
                if isinstance(r, Mapping)
            ),
            variants=VariantSet(specs, key, "default") if specs else None,
            prerequisites=tuple(
                Prerequisite.of(p)
                for p in item.get("prerequisites") or ()
                if isinstance(p, Mapping)
            ),
        )

    def segment_error(self, segments: Mapping[str, Segment]) -> tuple[ErrorCode, str] | None:
        """A segment this flag names that is missing or cannot be compiled (the flag is off)."""
        for name in self.segment_names:
            segment = segments.get(name)
            if segment is None:
                return ErrorCode.SEGMENT_NOT_FOUND, f"segment {name!r} not found"
            if segment.error is not None:
                return ErrorCode.INVALID_RULE, segment.error
        return None

    def first_match(
        self, context: Context, segments: Mapping[str, Segment], as_key: str | None = None
    ) -> Rule | None:
        """The first rule that matches. `as_key`: evaluated on behalf of that flag (a
        prerequisite check, the dependent flag's key), which a rule without a group id of its
        own hashes with, as Unleash's engine does."""
        fields = context.fields
        if as_key is None or as_key == self.key:
            for rule in self.rules:
                if rule.match(fields, segments):
                    return rule
            return None
        for rule in self.rules:
            if rule.match_as(fields, segments, as_key):
                return rule
        return None

    def in_rollout(self, context: Context) -> bool:
        """A flag without rules: today's percentage rollout on the user id."""
        if self.percentage >= FULL_ROLLOUT:
            return True
        user_id = context.user_id
        return user_id is not None and bucket_of(self.key, user_id) <= self.percentage


def _on(flag: Flag, context: Context, segments: Mapping[str, Segment], child: str) -> bool:
    """Enabled, compiled and matching, prerequisites aside: a parent's answer in the
    prerequisite check of the flag `child`."""
    if not flag.enabled or flag.error is not None:
        return False
    if flag.segment_names and flag.segment_error(segments) is not None:
        return False
    if not flag.rules:
        return flag.in_rollout(context)
    return flag.first_match(context, segments, child) is not None


def _variant_set(flag: Flag, rule: Rule | None) -> VariantSet | None:
    if rule is not None and rule.variants is not None:
        return rule.variants
    return flag.variants


def parent_variant(
    flag: Flag, context: Context, segments: Mapping[str, Segment], child: str
) -> str | None:
    """The variant name a parent answers for a prerequisite's `variants` (in the check of the
    flag `child`): from its first matching rule's variants, else its own; None when it has
    none (Unleash's engine)."""
    rule = None
    if flag.rules and flag.error is None and flag.segment_error(segments) is None:
        rule = flag.first_match(context, segments, child)
    variants = _variant_set(flag, rule)
    if variants is None:
        return None
    chosen, _ = variants.choose(context.fields)
    return chosen.name if chosen is not None else None


def prerequisite_failure(
    flag: Flag,
    context: Context,
    flags: Mapping[str, Flag],
    segments: Mapping[str, Segment],
) -> tuple[int, str, ErrorCode | None] | None:
    """The first prerequisite that does not hold: (index, why, error code), or None."""
    for index, prerequisite in enumerate(flag.prerequisites):
        why = unmet(prerequisite, flag.key, context, flags, segments)
        if why is not None:
            return (index, *why)
    return None


def unmet(
    prerequisite: Prerequisite,
    child: str,
    context: Context,
    flags: Mapping[str, Flag],
    segments: Mapping[str, Segment],
) -> tuple[str, ErrorCode | None] | None:
    """Why one prerequisite does not hold (and the error code of a cycle), or None."""
    parent = flags.get(prerequisite.flag_key)
    if parent is None:
        return f"parent {prerequisite.flag_key!r} not found", None
    if parent.prerequisites:
        cycle = find_cycle(child, lambda key: _parent_keys(flags.get(key)))
        if cycle is not None:
            return "prerequisite cycle: " + " -> ".join(cycle), ErrorCode.PREREQUISITE_CYCLE
        return f"parent {parent.key!r} has prerequisites of its own (one level only)", None
    enabled = _on(parent, context, segments, child)
    if prerequisite.variants:
        name = parent_variant(parent, context, segments, child)
        if name is not None and name not in prerequisite.variants:
            return f"parent {parent.key!r} answers variant {name!r}", None
    if enabled is not prerequisite.enabled:
        state = "on" if enabled else "off"
        return f"parent {parent.key!r} is {state}", None
    return None


def _parent_keys(flag: Flag | None) -> list[str]:
    return [] if flag is None else [p.flag_key for p in flag.prerequisites]


def is_enabled(
    flag: Flag, context: Context, flags: Mapping[str, Flag], segments: Mapping[str, Segment]
) -> bool:
    """Whether the flag is on for the context. The hot path: no result is built."""
    if not flag.plain:  # disabled, prerequisites, an error or no rules: the general way
        if not flag.enabled:
            return False
        if flag.prerequisites and prerequisite_failure(flag, context, flags, segments):
            return False
        if flag.error is not None:
            return False
        if not flag.rules:
            return flag.in_rollout(context)
    for name in flag.segment_names:
        segment = segments.get(name)
        if segment is None or segment.error is not None:
            return False
    fields = context.fields
    for match in flag.matchers:  # noqa: SIM110 - a plain loop: any() over a generator costs more
        if match(fields, segments):
            return True
    return False


def evaluate(
    flag: Flag, context: Context, flags: Mapping[str, Flag], segments: Mapping[str, Segment]
) -> Result:
    """The flag's answer for the context: enabled, variant and reason."""
    if not flag.enabled:
        return _DISABLED
    if flag.prerequisites:
        failure = prerequisite_failure(flag, context, flags, segments)
        if failure is not None:
            _, _, code = failure
            if code is not None:
                return Result(False, DISABLED_OFF, Reason.ERROR, error_code=code.value)
            return Result(False, DISABLED_OFF, Reason.PREREQUISITE_FAILED)
    if flag.error is not None:
        return Result(False, DISABLED_OFF, Reason.ERROR, error_code=ErrorCode.INVALID_RULE.value)
    if flag.segment_names:
        error = flag.segment_error(segments)
        if error is not None:
            return Result(False, DISABLED_OFF, Reason.ERROR, error_code=error[0].value)
    if not flag.rules:
        if not flag.in_rollout(context):
            return Result(False, DISABLED_OFF, Reason.SPLIT)
        split = flag.percentage < FULL_ROLLOUT
        return _with_variant(flag.variants, context, Reason.SPLIT if split else Reason.DEFAULT)
    rule = flag.first_match(context, segments)
    if rule is None:
        return _NO_MATCH
    reason = Reason.SPLIT if rule.percentage < FULL_ROLLOUT else Reason.TARGETING_MATCH
    return _with_variant(_variant_set(flag, rule), context, reason, rule)


def _with_variant(
    variants: VariantSet | None, context: Context, reason: Reason, rule: Rule | None = None
) -> Result:
    variant = DISABLED_ON
    if variants is not None:
        chosen, split = variants.choose(context.fields)
        if chosen is not None:
            variant = chosen.answer
            if split:
                reason = Reason.SPLIT
    if rule is None:
        return Result(True, variant, reason)
    return Result(True, variant, reason, rule.index, rule.id)
