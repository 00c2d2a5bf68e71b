"""Segment use cases (issue 10): named constraint sets of one environment that flags' rules refer
to by name. Versioned, audited and queued for the read model like flags; a change is one event
(kind 'segment', key its name)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aurora_client.targeting import Limits, validate_segment
from aurora_client.targeting.validation import normalize_constraints
from sqlalchemy.exc import IntegrityError

from database.models import HistoryEntry, Segment
from database.uow import UnitOfWork
from service.errors import (
    AlreadyExists,
    InUse,
    InvalidTargeting,
    LimitExceeded,
    NotFound,
    segment_missing,
)
from service.etag import IfMatch, check_if_match
from service.principal import Principal
from service.usecases.changes import apply_create, apply_delete, apply_update

SEGMENTS_LIMIT = "AURORA_MAX_SEGMENTS_PER_ENVIRONMENT"


def _get(uow: UnitOfWork, env: str, name: str, *, for_update: bool = False) -> Segment:
    segment = uow.segments.get_by_name(env, name, for_update=for_update)
    if segment is None:
        raise segment_missing(env, name)
    return segment


def _checked(constraints: list[dict[str, Any]], limits: Limits) -> list[dict[str, Any]]:
    problems = validate_segment(constraints, limits=limits)
    if problems:
        raise InvalidTargeting(problems)
    return normalize_constraints(constraints)


def create(
    uow: UnitOfWork,
    *,
    env: str,
    name: str,
    description: str | None,
    constraints: list[dict[str, Any]],
    actor: Principal,
    limits: Limits | None = None,
    max_segments: int,
) -> Segment:
    actor.require_write(env)
    constraints = _checked(constraints, limits or Limits())
    with uow:
        taken = f"segment {name!r} already exists in environment {env!r}"
        if uow.segments.get_by_name(env, name) is not None:
            raise AlreadyExists(taken)
        if uow.segments.count(env) >= max_segments:
            raise LimitExceeded(
                f"environment {env!r} already has {max_segments} segments, the most it may",
                limit=SEGMENTS_LIMIT,
            )
        segment = Segment(
            name=name, environment=env, description=description, constraints=constraints
        )
        try:
            apply_create(uow, segment, actor=actor)
        except IntegrityError as exc:
            raise AlreadyExists(taken) from exc
        return segment


def get(uow: UnitOfWork, env: str, name: str) -> Segment:
    with uow:
        return _get(uow, env, name)


@dataclass(frozen=True, slots=True)
class Page:
    items: Sequence[Segment]
    total: int


def list_page(
    uow: UnitOfWork, *, environments: Sequence[str] | None, limit: int, offset: int
) -> Page:
    with uow:
        items, total = uow.segments.list(environments, limit=limit, offset=offset)
        return Page(items, total)


def update(
    uow: UnitOfWork,
    env: str,
    name: str,
    changes: dict[str, Any],
    *,
    if_match: IfMatch | None,
    actor: Principal,
    limits: Limits | None = None,
) -> Segment:
    """Change the description and/or the constraints: one new version (none if nothing changes).
    Every flag naming the segment follows at once (its rules refer to it by name)."""
    actor.require_write(env)
    with uow:
        segment = _get(uow, env, name, for_update=True)
        check_if_match(if_match, segment.version)
        if "constraints" in changes:
            changes = {
                **changes,
                "constraints": _checked(changes["constraints"], limits or Limits()),
            }
        if apply_update(uow, segment, changes, if_match=if_match, actor=actor):
            uow.commit()
        return segment


def delete(
    uow: UnitOfWork, env: str, name: str, *, if_match: IfMatch | None, actor: Principal
) -> None:
    """Refused (409, naming them) while flags' rules name the segment. The segment is locked
    before the flags are read, and a flag write naming a segment locks it too (flags._checked),
    so a rule naming it cannot be committed alongside the delete; the flags are read locked, so
    the check sees every one committed (under any isolation level)."""
    actor.require_write(env)
    with uow:
        segment = _get(uow, env, name, for_update=True)
        check_if_match(if_match, segment.version)
        users = sorted(
            f.flag_key
            for f in uow.flags.in_environment(env, for_update=True)
            if name in f.segment_names()
        )
        if users:
            shown = ", ".join(repr(key) for key in users[:20])
            more = f" and {len(users) - 20} more" if len(users) > 20 else ""
            raise InUse(
                f"segment {name!r} is named by the rules of {len(users)} flag(s): {shown}{more}; "
                "remove it from their rules first",
                flags=users,
            )
        apply_delete(uow, segment, if_match=if_match, actor=actor)
        uow.commit()


def history(uow: UnitOfWork, env: str, name: str) -> Sequence[HistoryEntry]:
    """Every change of the name in the environment, newest first, across deletes."""
    with uow:
        entries = uow.history.for_key("segment", env, None, name)
        if not entries:
            raise NotFound(
                f"segment {name!r} has no history in environment {env!r}: it never existed"
            )
        return entries
