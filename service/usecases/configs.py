"""Configuration use cases."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aurora_client.state import ConfigState, JsonValue, Resolved, merge_scopes, resolve_value
from sqlalchemy.exc import IntegrityError

from database.engine import ConcurrentWrite
from database.models import Configuration, HistoryEntry, scope_of
from database.uow import UnitOfWork
from service.errors import NotFound, config_missing, config_taken, value_missing
from service.etag import IfMatch, check_if_match
from service.principal import Principal
from service.usecases.changes import apply_create, apply_delete, apply_update


def _get(
    uow: UnitOfWork, config_id: int, *, reader: Principal, for_update: bool = False
) -> Configuration:
    """The item by id, if this token may see it. One in an environment the token may not read
    is missing to it, with the very 404 of a missing id: an id must not tell a token what exists
    where it cannot look (issue 9)."""
    config = uow.configs.get(config_id, for_update=for_update)
    if config is None or not reader.can_read(config.environment):
        raise NotFound(f"configuration {config_id} does not exist")
    return config


def _new(
    env: str, service: str | None, key: str, value: JsonValue, description: str | None
) -> Configuration:
    return Configuration(
        config_key=key,
        environment=env,
        service_name=service,
        service_scope=scope_of(service),
        config_value=value,
        description=description,
    )


def create(
    uow: UnitOfWork,
    *,
    env: str,
    service: str | None,
    key: str,
    value: JsonValue,
    description: str | None,
    actor: Principal,
) -> Configuration:
    actor.require_write(env)
    with uow:
        if uow.configs.get_by_scope(env, service, key) is not None:
            raise config_taken(env, service, key)
        config = _new(env, service, key, value, description)
        try:
            apply_create(uow, config, actor=actor)
        except IntegrityError as exc:  # a concurrent create of the same scope won
            raise config_taken(env, service, key) from exc
        return config


def get(uow: UnitOfWork, config_id: int, *, reader: Principal) -> Configuration:
    with uow:
        return _get(uow, config_id, reader=reader)


def get_by_scope(uow: UnitOfWork, env: str, service: str | None, key: str) -> Configuration:
    with uow:
        config = uow.configs.get_by_scope(env, service, key)
        if config is None:
            raise config_missing(env, service, key)
        return config


def resolve(uow: UnitOfWork, env: str, service: str | None, key: str) -> Resolved:
    """The value a service sees: its own, else the environment's global."""
    with uow:
        resolved = resolve_value(
            lambda scope: _state_or_none(uow.configs.get_by_scope(env, scope, key)), service
        )
        if resolved is None:
            raise value_missing(env, service, key)
        return resolved


def _state_or_none(config: Configuration | None) -> ConfigState | None:
    return None if config is None else config.to_state()


@dataclass(frozen=True, slots=True)
class Page:
    items: Sequence[Configuration]
    total: int


def list_page(
    uow: UnitOfWork,
    *,
    environments: Sequence[str] | None,
    service: str | None,
    key_prefix: str | None,
    limit: int,
    offset: int,
) -> Page:
    with uow:
        items, total = uow.configs.list(
            environments, service, key_prefix, limit=limit, offset=offset
        )
        return Page(items, total)


def bulk(uow: UnitOfWork, env: str, service: str | None) -> dict[str, JsonValue]:
    with uow:
        rows = uow.configs.in_scopes(env, service)
        globals_ = {c.config_key: c.config_value for c in rows if c.service_name is None}
        own = {c.config_key: c.config_value for c in rows if c.service_name is not None}
        return merge_scopes(globals_, own)


def update(
    uow: UnitOfWork,
    config_id: int,
    changes: dict[str, Any],
    *,
    if_match: IfMatch | None,
    actor: Principal,
) -> Configuration:
    with uow:
        config = _get(uow, config_id, reader=actor, for_update=True)
        if apply_update(uow, config, changes, if_match=if_match, actor=actor):
            uow.commit()
        return config


@dataclass(frozen=True, slots=True)
class SetResult:
    config: Configuration
    created: bool


def set_value(
    uow: UnitOfWork,
    *,
    env: str,
    service: str | None,
    key: str,
    value: JsonValue,
    description: str | None,
    if_match: IfMatch | None,
    actor: Principal,
) -> SetResult:
    """Upsert one scope's value. A description of None leaves an existing one unchanged."""
    actor.require_write(env)
    with uow:
        config = uow.configs.get_by_scope(env, service, key, for_update=True)
        if config is not None:
            changes: dict[str, Any] = {"config_value": value}
            if description is not None:
                changes["description"] = description
            if apply_update(uow, config, changes, if_match=if_match, actor=actor):
                uow.commit()
            return SetResult(config, created=False)
        check_if_match(if_match, None)
        config = _new(env, service, key, value, description)
        try:
            apply_create(uow, config, actor=actor)
        except IntegrityError as exc:
            # Another writer created this scope between our read and insert: run again, and
            # this time update what it wrote (with its true old value in the history).
            raise ConcurrentWrite(f"configuration {key!r} created concurrently") from exc
        return SetResult(config, created=True)


def delete(uow: UnitOfWork, config_id: int, *, if_match: IfMatch | None, actor: Principal) -> None:
    with uow:
        apply_delete(
            uow, _get(uow, config_id, reader=actor, for_update=True), if_match=if_match, actor=actor
        )
        uow.commit()


def history(uow: UnitOfWork, config_id: int, *, reader: Principal) -> Sequence[HistoryEntry]:
    """Every change of one item, newest first. An item's history stays in its environment, so
    one the token may not read answers as if it never existed (see `_get`)."""
    with uow:
        entries = uow.history.for_item("config", config_id)
        if not entries or not reader.can_read(entries[0].environment):
            raise NotFound(f"configuration {config_id} has no history: it never existed")
        return entries
