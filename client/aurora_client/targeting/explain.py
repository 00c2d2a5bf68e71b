"""Explain: the account of one evaluation, per prerequisite, rule, segment and constraint.

Unleash's Playground shows the same. Every rule is evaluated (not only up to the first match) so
the caller sees why each one did or did not match; the answer itself is `evaluate`'s. The output
is plain JSON (documented in docs/TARGETING.md). It shows segment contents and context values, so
the API serves it only with a read scope.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aurora_client.evaluation import FULL_ROLLOUT, bucket_of
from aurora_client.targeting.context import Context
from aurora_client.targeting.flags import Flag, evaluate, unmet
from aurora_client.targeting.operators import Constraint
from aurora_client.targeting.rules import Rule, rollout_bucket, stickiness_value
from aurora_client.targeting.segments import Segment


def _constraint(index: int, constraint: Constraint, context: Context) -> dict[str, Any]:
    actual = context.value(constraint.context_name)
    matched = constraint.check(context.fields)
    why = None
    if not matched:
        if constraint.broken is not None:
            why = f"invalid constraint: {constraint.broken}"
        elif constraint.never is not None:
            why = constraint.never
        elif actual is None and constraint.context_name != "currentTime":
            why = f"context field {constraint.context_name!r} is missing"
        elif constraint.inverted:
            why = f"{actual!r} satisfies {constraint.operator}, and the constraint is inverted"
        else:
            why = f"{actual!r} does not satisfy {constraint.operator}"
    return {
        "index": index,
        **constraint.to_dict(),
        "context_value": actual,
        "matched": matched,
        "reason": why,
    }


def _rollout(rule: Rule, context: Context) -> dict[str, Any]:
    value = stickiness_value(rule.stickiness, context.fields)
    bucket = rollout_bucket(rule.group_id, value) if value is not None else None
    drawn = value is None and rule.stickiness in ("default", "random")
    why: str | None
    if rule.percentage <= 0:
        matched, why = False, "the percentage is 0"
    elif drawn:
        matched = rule.percentage >= FULL_ROLLOUT or rule.in_rollout(context.fields)
        why = None if matched else "a random draw fell outside the percentage"
    elif value is None:
        matched, why = False, f"context field {rule.stickiness!r} (stickiness) is missing"
    else:
        matched = bucket is not None and bucket <= rule.percentage
        why = None if matched else f"bucket {bucket} is above {rule.percentage}"
    return {
        "percentage": rule.percentage,
        "stickiness": rule.stickiness,
        "group_id": rule.group_id,
        "stickiness_value": value,
        "bucket": bucket,
        "matched": matched,
        "reason": why,
    }


def _rule(rule: Rule, context: Context, segments: Mapping[str, Segment]) -> dict[str, Any]:
    constraints = [_constraint(i, c, context) for i, c in enumerate(rule.constraints)]
    segment_reports = []
    for name in rule.segments:
        segment = segments.get(name)
        if segment is None:
            segment_reports.append(
                {"name": name, "found": False, "matched": False, "constraints": []}
            )
            continue
        checks = [_constraint(i, c, context) for i, c in enumerate(segment.constraints)]
        segment_reports.append(
            {
                "name": name,
                "found": True,
                "matched": all(c["matched"] for c in checks),
                "constraints": checks,
            }
        )
    rollout = _rollout(rule, context)
    why = None
    if rule.broken is not None:
        why = f"invalid rule: {rule.broken}"
    elif not all(c["matched"] for c in constraints):
        why = "a constraint does not hold"
    elif not all(s["matched"] for s in segment_reports):
        why = "a segment does not hold"
    elif not rollout["matched"]:
        why = "not in the rollout"
    return {
        "index": rule.index,
        "id": rule.id,
        "matched": why is None,
        "reason": why,
        "constraints": constraints,
        "segments": segment_reports,
        "rollout": rollout,
        "variants": [v.name for v in rule.variants.variants] if rule.variants else [],
    }


def explain(
    flag: Flag, context: Context, flags: Mapping[str, Flag], segments: Mapping[str, Segment]
) -> dict[str, Any]:
    """The evaluation's result and, for each prerequisite, rule and constraint, whether it
    matched and why not (JSON-ready)."""
    result = evaluate(flag, context, flags, segments)
    prerequisites = []
    for index, prerequisite in enumerate(flag.prerequisites):
        why = unmet(prerequisite, flag.key, context, flags, segments)
        prerequisites.append(
            {
                "index": index,
                **prerequisite.to_dict(),
                "matched": why is None,
                "reason": None if why is None else why[0],
            }
        )
    out: dict[str, Any] = {
        "flag_key": flag.key,
        "version": flag.version,
        "result": result.to_dict(),
        "is_enabled": flag.enabled,
        "error": flag.error or _segment_error(flag, segments),
        "prerequisites": prerequisites,
        "rules": [_rule(rule, context, segments) for rule in flag.rules],
        "rollout": None,
    }
    if not flag.rules:
        user_id = context.user_id
        bucket = bucket_of(flag.key, user_id) if user_id is not None else None
        out["rollout"] = {
            "percentage": flag.percentage,
            "user_id": user_id,
            "bucket": bucket,
            "matched": flag.in_rollout(context),
        }
    return out


def _segment_error(flag: Flag, segments: Mapping[str, Segment]) -> str | None:
    error = flag.segment_error(segments)
    return None if error is None else error[1]
