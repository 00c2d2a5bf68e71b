"""Import of Unleash's client features document (issue 10): all or nothing, in one transaction.

The document is converted by service.targeting.unleash (Unleash's semantics kept exactly, odd
constraints, missing parents and cycles included: they are listed as warnings, not refused).
Segments are written before the flags that name them. An item whose state already equals the
document's is left alone (no new version), so importing the same document twice changes nothing
the second time. A dry run does the same work and rolls it back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aurora_client.targeting import Limits, Problem
from sqlalchemy.exc import IntegrityError

from database.engine import ConcurrentWrite
from database.models import FeatureFlag, Segment
from database.uow import UnitOfWork
from service.errors import InvalidInput, InvalidTargeting, LimitExceeded
from service.principal import Principal
from service.schemas import check_flag_key, check_segment_name
from service.targeting.unleash import UnsupportedStrategy, convert
from service.usecases.changes import add_new, apply_update

SEGMENTS_LIMIT = "AURORA_MAX_SEGMENTS_PER_ENVIRONMENT"
FLAG_FIELDS = (
    "flag_name",
    "description",
    "is_enabled",
    "rollout_percentage",
    "rules",
    "variants",
    "prerequisites",
)
Outcome = Literal["created", "changed", "unchanged"]


@dataclass
class ImportReport:
    environment: str
    dry_run: bool
    created: list[dict[str, Any]] = field(default_factory=list)
    changed: list[dict[str, Any]] = field(default_factory=list)
    unchanged: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add(self, outcome: Outcome, kind: str, key: str, version: int) -> None:
        getattr(self, outcome).append({"kind": kind, "key": key, "version": version})


def _over(count: int, limit: int, pointer: str, what: str, setting: str) -> list[Problem]:
    return [Problem(pointer, f"{count} {what}, over {limit}", setting)] if count > limit else []


def _problems(
    flags: list[dict[str, Any]], segments: list[dict[str, Any]], limits: Limits
) -> list[Problem]:
    """What the import refuses although Unleash accepts it: names our keys cannot carry, and the
    size limits every write has (AURORA_MAX_*)."""
    problems: list[Problem] = []
    for i, segment in enumerate(segments):
        try:
            check_segment_name(segment["name"])
        except ValueError as exc:
            problems.append(Problem(f"/segments/{i}/name", f"{segment['name']!r}: {exc}"))
    for i, flag in enumerate(flags):
        where = f"/features/{i}"
        try:
            check_flag_key(flag["flag_key"])
        except ValueError as exc:
            problems.append(Problem(f"{where}/name", f"{flag['flag_key']!r}: {exc}"))
        rules = flag["rules"]
        problems += _over(
            len(rules),
            limits.rules_per_flag,
            f"{where}/strategies",
            "strategies",
            "AURORA_MAX_RULES_PER_FLAG",
        )
        for r, rule in enumerate(rules):
            constraints = rule.get("constraints") or []
            problems += _over(
                len(constraints),
                limits.constraints_per_rule,
                f"{where}/strategies/{r}/constraints",
                "constraints",
                "AURORA_MAX_CONSTRAINTS_PER_RULE",
            )
            for c, constraint in enumerate(constraints):
                problems += _over(
                    len(constraint.get("values") or []),
                    limits.values_per_constraint,
                    f"{where}/strategies/{r}/constraints/{c}/values",
                    "values",
                    "AURORA_MAX_VALUES_PER_CONSTRAINT",
                )
    return problems


def _write_segment(
    uow: UnitOfWork, env: str, data: dict[str, Any], actor: Principal
) -> tuple[Outcome, int]:
    segment = uow.segments.get_by_name(env, data["name"], for_update=True)
    if segment is None:
        segment = Segment(
            name=data["name"],
            environment=env,
            description=data["description"],
            constraints=data["constraints"],
        )
        add_new(uow, segment, actor=actor)
        return "created", segment.version
    changes = {"description": data["description"], "constraints": data["constraints"]}
    changed = apply_update(uow, segment, changes, if_match=None, actor=actor)
    return ("changed" if changed else "unchanged"), segment.version


def _write_flag(
    uow: UnitOfWork, env: str, data: dict[str, Any], actor: Principal
) -> tuple[Outcome, int]:
    flag = uow.flags.get_by_key(env, data["flag_key"], for_update=True)
    if flag is None:
        flag = FeatureFlag(
            flag_key=data["flag_key"],
            environment=env,
            **{name: data[name] for name in FLAG_FIELDS},
        )
        add_new(uow, flag, actor=actor)
        return "created", flag.version
    changes = {name: data[name] for name in FLAG_FIELDS}
    changed = apply_update(uow, flag, changes, if_match=None, actor=actor)
    return ("changed" if changed else "unchanged"), flag.version


def import_unleash(
    uow: UnitOfWork,
    env: str,
    document: Mapping[str, Any],
    *,
    dry_run: bool,
    actor: Principal,
    limits: Limits,
    max_segments: int,
) -> ImportReport:
    actor.require_write(env)
    try:
        conversion = convert(document)
    except UnsupportedStrategy as exc:
        raise InvalidInput(str(exc)) from None
    problems = _problems(conversion.flags, conversion.segments, limits)
    if problems:
        raise InvalidTargeting(problems)
    report = ImportReport(env, dry_run, warnings=list(conversion.warnings))
    with uow:
        new_segments = sum(
            uow.segments.get_by_name(env, s["name"]) is None for s in conversion.segments
        )
        if uow.segments.count(env) + new_segments > max_segments:
            raise LimitExceeded(
                f"the import would leave environment {env!r} with more than {max_segments} "
                "segments",
                limit=SEGMENTS_LIMIT,
            )
        for segment in conversion.segments:
            outcome, version = _write_segment(uow, env, segment, actor)
            report.add(outcome, "segment", segment["name"], version)
        for flag in conversion.flags:
            outcome, version = _write_flag(uow, env, flag, actor)
            report.add(outcome, "flag", flag["flag_key"], version)
        if dry_run:
            return report  # leaving the unit of work without a commit rolls everything back
        try:
            uow.commit()
        except IntegrityError as exc:  # a create raced ours: run the whole import again
            raise ConcurrentWrite(f"an item of the import changed concurrently: {exc}") from exc
    return report
