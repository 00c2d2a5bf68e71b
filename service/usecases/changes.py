"""What every write shares: If-Match, version bump, actor and timestamps, and the audit record."""

from __future__ import annotations

from typing import Any

from aurora_client.events import ChangeEvent
from aurora_client.state import same_json
from sqlalchemy.exc import IntegrityError

from database.engine import ConcurrentWrite
from database.models import Configuration, FeatureFlag, Segment, utcnow
from database.repositories import Action, ItemKind
from database.uow import UnitOfWork
from service.etag import IfMatch, check_if_match
from service.principal import Principal

Item = Configuration | FeatureFlag | Segment


def kind_of(item: Item) -> ItemKind:
    if isinstance(item, Configuration):
        return "config"
    return "flag" if isinstance(item, FeatureFlag) else "segment"


def key_of(item: Item) -> str:
    if isinstance(item, Configuration):
        return item.config_key
    return item.flag_key if isinstance(item, FeatureFlag) else item.name


def service_of(item: Item) -> str | None:
    return item.service_name if isinstance(item, Configuration) else None


def record(
    uow: UnitOfWork,
    item: Item,
    action: Action,
    *,
    old: dict[str, Any] | None,
    actor: Principal,
) -> None:
    """Audit the change and queue it for the read model, in the change's own transaction."""
    new = None if action == "delete" else item.snapshot()
    uow.history.record(
        kind_of(item),
        action,
        item_id=item.id,
        key=key_of(item),
        env=item.environment,
        service=service_of(item),
        version=item.version,
        old=old,
        new=new,
        actor=actor.name,
    )
    uow.outbox.add(
        ChangeEvent(
            kind=kind_of(item),
            op="delete" if action == "delete" else "upsert",
            key=key_of(item),
            environment=item.environment,
            service_name=service_of(item),
            version=item.version,
            state=new,
        )
    )


def stamp_new(item: Item, uow: UnitOfWork, actor: Principal) -> None:
    """Version 1 for a key never seen in its scope, else one past its last (deleted) version."""
    actor.require_write(item.environment)
    now = utcnow()
    item.version = (
        uow.history.last_version(kind_of(item), item.environment, service_of(item), key_of(item))
        + 1
    )
    item.created_at = item.updated_at = now
    item.created_by = item.updated_by = actor.name


def add_new(uow: UnitOfWork, item: Item, *, actor: Principal) -> None:
    """Insert a new item as its key's next version, audited and queued; the caller commits (once,
    for a write of many items: an import)."""
    stamp_new(item, uow, actor)
    if isinstance(item, Configuration):
        uow.configs.add(item)
    elif isinstance(item, FeatureFlag):
        uow.flags.add(item)
    else:
        uow.segments.add(item)
    record(uow, item, "create", old=None, actor=actor)


def apply_create(uow: UnitOfWork, item: Item, *, actor: Principal) -> None:
    """Insert a new item as its key's next version, audited and queued, and commit. A
    concurrent insert of the same key surfaces as IntegrityError (the caller says what it means).

    A create racing another writer's create-and-delete of the same key reads the same "last
    version" and would record the same version again; the unique history index refuses the
    second one at commit, and the use case runs again (ConcurrentWrite) with the next version."""
    add_new(uow, item, actor=actor)
    try:
        uow.commit()
    except IntegrityError as exc:
        raise ConcurrentWrite(
            f"{kind_of(item)} {key_of(item)!r} changed concurrently; version {item.version} "
            "was taken"
        ) from exc


def apply_update(
    uow: UnitOfWork,
    item: Item,
    changes: dict[str, Any],
    *,
    if_match: IfMatch | None,
    actor: Principal,
) -> bool:
    """Apply field changes as one new version. Returns False (and writes nothing) when no field
    actually changes: an idempotent PUT does not bump the version or add history."""
    actor.require_write(item.environment)
    check_if_match(if_match, item.version)
    effective = {
        name: value for name, value in changes.items() if not same_json(getattr(item, name), value)
    }
    if not effective:
        return False
    before = item.snapshot()
    for name, value in effective.items():
        setattr(item, name, value)
    item.version += 1
    item.updated_at = utcnow()
    item.updated_by = actor.name
    record(uow, item, "update", old=before, actor=actor)
    return True


def apply_delete(
    uow: UnitOfWork, item: Item, *, if_match: IfMatch | None, actor: Principal
) -> None:
    actor.require_write(item.environment)
    check_if_match(if_match, item.version)
    before = item.snapshot()
    # The delete is a change of its own: one version past the last, so consumers ordering by
    # version see the tombstone after every earlier state.
    item.version += 1
    item.updated_at = utcnow()
    item.updated_by = actor.name
    record(uow, item, "delete", old=before, actor=actor)
    if isinstance(item, Configuration):
        uow.configs.delete(item)
    elif isinstance(item, FeatureFlag):
        uow.flags.delete(item)
    else:
        uow.segments.delete(item)
