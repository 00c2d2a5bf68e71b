"""Feature-flag use cases."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aurora_client.targeting import (
    Limits,
    normalize_rules,
    normalize_variants,
    validate_targeting,
)
from sqlalchemy.exc import IntegrityError

from database.models import FeatureFlag, HistoryEntry
from database.uow import UnitOfWork
from service.errors import AlreadyExists, InvalidTargeting, NotFound, flag_missing
from service.etag import IfMatch, check_if_match
from service.principal import Principal
from service.usecases.changes import apply_create, apply_delete, apply_update


def _get(
    uow: UnitOfWork, flag_id: int, *, reader: Principal, for_update: bool = False
) -> FeatureFlag:
    """The item by id, if this token may see it. One in an environment the token may not read
    is missing to it, with the very 404 of a missing id: an id must not tell a token what exists
    where it cannot look (issue 9)."""
    flag = uow.flags.get(flag_id, for_update=for_update)
    if flag is None or not reader.can_read(flag.environment):
        raise NotFound(f"feature flag {flag_id} does not exist")
    return flag


def _get_by_key(uow: UnitOfWork, env: str, key: str, *, for_update: bool = False) -> FeatureFlag:
    flag = uow.flags.get_by_key(env, key, for_update=for_update)
    if flag is None:
        raise flag_missing(env, key)
    return flag


TargetingField = Literal["rules", "variants", "prerequisites"]
TARGETING: tuple[TargetingField, ...] = ("rules", "variants", "prerequisites")


def _parents(prerequisites: Any) -> list[str]:
    """The parent keys of a stored prerequisite list (as lenient as an import may have left it)."""
    if not isinstance(prerequisites, list):
        return []
    return [
        p["flag_key"]
        for p in prerequisites
        if isinstance(p, dict) and isinstance(p.get("flag_key"), str)
    ]


def _checked(
    uow: UnitOfWork, env: str, key: str, changes: dict[str, Any], limits: Limits
) -> dict[str, Any]:
    """`changes` with its targeting fields validated against the environment (issue 10: a native
    write refuses what could never work, naming it) and its rules given their ids.

    Only the fields sent are checked, so stored rules an import kept as Unleash has them (never
    matching) do not block a change of the variants. The segments named are locked until the
    change commits, so a segment's delete cannot slip between this check and the commit (it
    locks the segment first, then reads the flags); a change of prerequisites locks every flag
    of the environment, so that two changes that would close a cycle together run one after the
    other and the second sees the first."""
    sent = {name: changes[name] for name in TARGETING if name in changes}
    if not any(sent.values()):  # nothing sent, or empty lists: nothing to check
        return changes
    rules, prerequisites = sent.get("rules", []), sent.get("prerequisites", [])
    named = {name for rule in rules for name in rule.get("segments") or ()}
    segments = uow.segments.existing(env, named, for_update=True) if named else set()
    graph: dict[str, Sequence[str]] = {}
    if prerequisites:
        graph = {
            f.flag_key: _parents(f.prerequisites)
            for f in uow.flags.in_environment(env, for_update=True)
        }
    problems = validate_targeting(
        rules,
        sent.get("variants", []),
        prerequisites,
        flag_key=key,
        segments=segments,
        flags=graph,
        limits=limits,
    )
    if problems:
        raise InvalidTargeting(problems)
    normalized = dict(changes)
    if "rules" in sent:
        # ids, rollout defaults (the group id: this flag's key), variant weights and stickiness
        normalized["rules"] = normalize_rules(rules, flag_key=key)
    if "variants" in sent:
        normalized["variants"] = normalize_variants(sent["variants"])
    return normalized


def create(
    uow: UnitOfWork,
    *,
    env: str,
    key: str,
    name: str,
    description: str | None,
    is_enabled: bool,
    rollout_percentage: int,
    actor: Principal,
    targeting: dict[str, list[dict[str, Any]]] | None = None,
    limits: Limits | None = None,
) -> FeatureFlag:
    """`targeting`: rules, variants and prerequisites (each [] when left out)."""
    actor.require_write(env)
    with uow:
        taken = f"feature flag {key!r} already exists in environment {env!r}"
        if uow.flags.get_by_key(env, key) is not None:
            raise AlreadyExists(taken)
        sent: dict[str, Any] = {name: (targeting or {}).get(name, []) for name in TARGETING}
        lists = _checked(uow, env, key, sent, limits or Limits())
        flag = FeatureFlag(
            flag_key=key,
            flag_name=name,
            description=description,
            environment=env,
            is_enabled=is_enabled,
            rollout_percentage=rollout_percentage,
            **lists,
        )
        try:
            apply_create(uow, flag, actor=actor)
        except IntegrityError as exc:
            raise AlreadyExists(taken) from exc
        return flag


def get(uow: UnitOfWork, flag_id: int, *, reader: Principal) -> FeatureFlag:
    with uow:
        return _get(uow, flag_id, reader=reader)


def get_by_key(uow: UnitOfWork, env: str, key: str) -> FeatureFlag:
    with uow:
        return _get_by_key(uow, env, key)


@dataclass(frozen=True, slots=True)
class Page:
    items: Sequence[FeatureFlag]
    total: int


def list_page(
    uow: UnitOfWork,
    *,
    environments: Sequence[str] | None,
    key_prefix: str | None,
    limit: int,
    offset: int,
) -> Page:
    with uow:
        items, total = uow.flags.list(environments, key_prefix, limit=limit, offset=offset)
        return Page(items, total)


def update(
    uow: UnitOfWork,
    flag_id: int,
    changes: dict[str, Any],
    *,
    if_match: IfMatch | None,
    actor: Principal,
    limits: Limits | None = None,
) -> FeatureFlag:
    with uow:
        flag = _get(uow, flag_id, reader=actor, for_update=True)
        actor.require_write(flag.environment)
        check_if_match(if_match, flag.version)
        changes = _checked(uow, flag.environment, flag.flag_key, changes, limits or Limits())
        if apply_update(uow, flag, changes, if_match=if_match, actor=actor):
            uow.commit()
        return flag


def replace(
    uow: UnitOfWork,
    env: str,
    key: str,
    field: TargetingField,
    items: list[dict[str, Any]],
    *,
    if_match: IfMatch | None,
    actor: Principal,
    limits: Limits | None = None,
) -> FeatureFlag:
    """Replace one of the flag's targeting lists as a whole: one new version (none if equal)."""
    actor.require_write(env)
    with uow:
        flag = _get_by_key(uow, env, key, for_update=True)
        check_if_match(if_match, flag.version)  # a stale write is 412 before it is checked
        changes = _checked(uow, env, key, {field: items}, limits or Limits())
        if apply_update(uow, flag, changes, if_match=if_match, actor=actor):
            uow.commit()
        return flag


def toggle(
    uow: UnitOfWork,
    env: str,
    key: str,
    *,
    enabled: bool | None,
    if_match: IfMatch | None,
    actor: Principal,
) -> FeatureFlag:
    """Flip the flag, or set it to `enabled` when given (idempotent, safe for automation)."""
    actor.require_write(env)
    with uow:
        flag = _get_by_key(uow, env, key, for_update=True)
        target = (not flag.is_enabled) if enabled is None else enabled
        if apply_update(uow, flag, {"is_enabled": target}, if_match=if_match, actor=actor):
            uow.commit()
        return flag


def set_rollout(
    uow: UnitOfWork,
    env: str,
    key: str,
    percentage: int,
    *,
    if_match: IfMatch | None,
    actor: Principal,
) -> FeatureFlag:
    actor.require_write(env)
    with uow:
        flag = _get_by_key(uow, env, key, for_update=True)
        changes = {"rollout_percentage": percentage}
        if apply_update(uow, flag, changes, if_match=if_match, actor=actor):
            uow.commit()
        return flag


def delete(uow: UnitOfWork, flag_id: int, *, if_match: IfMatch | None, actor: Principal) -> None:
    with uow:
        apply_delete(
            uow, _get(uow, flag_id, reader=actor, for_update=True), if_match=if_match, actor=actor
        )
        uow.commit()


def history(uow: UnitOfWork, flag_id: int, *, reader: Principal) -> Sequence[HistoryEntry]:
    """Every change of one item, newest first. An item's history stays in its environment, so
    one the token may not read answers as if it never existed (see `_get`)."""
    with uow:
        entries = uow.history.for_item("flag", flag_id)
        if not entries or not reader.can_read(entries[0].environment):
            raise NotFound(f"feature flag {flag_id} has no history: it never existed")
        return entries
