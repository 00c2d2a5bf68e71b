"""Use cases on a fake unit of work: the rules of a change, with no database at all."""

from __future__ import annotations

from typing import Any

import pytest
from aurora_client.events import ChangeEvent

from database.models import Configuration, FeatureFlag, scope_of
from service.errors import AlreadyExists, Forbidden, NotFound, VersionMismatch
from service.etag import IfMatch
from service.principal import Principal
from service.usecases import configs, flags

ADMIN = Principal("admin", frozenset({"admin"}))
STAGING_WRITER = Principal("stager", frozenset({"write:staging"}))
READER_STAGING_WRITER = Principal("reader", frozenset({"read", "write:staging"}))


class FakeConfigs:
    def __init__(self) -> None:
        self.rows: dict[int, Configuration] = {}

    def get(self, config_id: int, *, for_update: bool = False) -> Configuration | None:
        return self.rows.get(config_id)

    def get_by_scope(
        self, env: str, service: str | None, key: str, *, for_update: bool = False
    ) -> Configuration | None:
        return next(
            (
                c
                for c in self.rows.values()
                if (c.environment, c.service_scope, c.config_key) == (env, scope_of(service), key)
            ),
            None,
        )

    def add(self, config: Configuration) -> None:
        config.id = len(self.rows) + 1
        self.rows[config.id] = config

    def delete(self, config: Configuration) -> None:
        del self.rows[config.id]


class FakeFlags:
    def __init__(self) -> None:
        self.rows: dict[int, FeatureFlag] = {}

    def get(self, flag_id: int, *, for_update: bool = False) -> FeatureFlag | None:
        return self.rows.get(flag_id)

    def get_by_key(self, env: str, key: str, *, for_update: bool = False) -> FeatureFlag | None:
        return next(
            (f for f in self.rows.values() if (f.environment, f.flag_key) == (env, key)), None
        )

    def add(self, flag: FeatureFlag) -> None:
        flag.id = len(self.rows) + 1
        self.rows[flag.id] = flag

    def delete(self, flag: FeatureFlag) -> None:
        del self.rows[flag.id]


class FakeHistory:
    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def record(self, kind: str, action: str, **fields: Any) -> None:
        self.entries.append({"kind": kind, "action": action, **fields})

    def last_version(self, kind: str, env: str, service: str | None, key: str) -> int:
        versions = [
            e["version"]
            for e in self.entries
            if (e["kind"], e["env"], e["service"], e["key"]) == (kind, env, service, key)
        ]
        return max(versions, default=0)


class FakeOutbox:
    def __init__(self) -> None:
        self.events: list[ChangeEvent] = []

    def add(self, event: ChangeEvent) -> None:
        self.events.append(event)


class FakeUnitOfWork:
    """Repositories in memory; `committed` counts commits, `with` does nothing else."""

    def __init__(self) -> None:
        self.configs, self.flags = FakeConfigs(), FakeFlags()
        self.history, self.outbox = FakeHistory(), FakeOutbox()
        self.committed = 0
        self.published: list[Any] = []

    def __enter__(self) -> FakeUnitOfWork:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None

    def commit(self) -> None:
        self.committed += 1


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork()


def make_flag(uow: FakeUnitOfWork, **extra: Any) -> FeatureFlag:
    fields = {
        "env": "production",
        "key": "f",
        "name": "f",
        "description": None,
        "is_enabled": False,
        "rollout_percentage": 50,
        "actor": ADMIN,
        **extra,
    }
    return flags.create(uow, **fields)  # type: ignore[arg-type]


def test_every_change_is_audited_and_queued_in_its_own_commit(uow: FakeUnitOfWork) -> None:
    flag = make_flag(uow)
    flags.toggle(uow, "production", "f", enabled=None, if_match=None, actor=ADMIN)
    assert uow.committed == 2
    assert [(e["action"], e["version"], e["actor"]) for e in uow.history.entries] == [
        ("create", 1, "admin"),
        ("update", 2, "admin"),
    ]
    assert uow.history.entries[1]["old"]["is_enabled"] is False
    assert uow.history.entries[1]["new"]["is_enabled"] is True
    assert [(e.op, e.version, e.state["is_enabled"]) for e in uow.outbox.events] == [  # type: ignore[index]
        ("upsert", 1, False),
        ("upsert", 2, True),
    ]
    assert flag.updated_by == "admin"


def test_a_change_to_nothing_writes_nothing(uow: FakeUnitOfWork) -> None:
    make_flag(uow)
    flags.set_rollout(uow, "production", "f", 50, if_match=None, actor=ADMIN)
    assert uow.committed == 1
    assert len(uow.outbox.events) == 1


def test_a_stale_if_match_refuses_before_writing(uow: FakeUnitOfWork) -> None:
    flag = make_flag(uow)
    with pytest.raises(VersionMismatch):
        flags.update(
            uow, flag.id, {"rollout_percentage": 10}, if_match=IfMatch.parse('"7"'), actor=ADMIN
        )
    assert (flag.rollout_percentage, flag.version, uow.committed) == (50, 1, 1)


def test_scopes_are_checked_before_any_data_is_touched(uow: FakeUnitOfWork) -> None:
    flag = make_flag(uow)
    with pytest.raises(Forbidden):
        flags.toggle(uow, "production", "f", enabled=True, if_match=None, actor=STAGING_WRITER)
    with pytest.raises(NotFound):  # it cannot read production: the id is missing to it
        flags.delete(uow, flag.id, if_match=None, actor=STAGING_WRITER)
    with pytest.raises(Forbidden):  # it can read production, but not change it
        flags.delete(uow, flag.id, if_match=None, actor=READER_STAGING_WRITER)
    with pytest.raises(Forbidden):
        configs.create(
            uow,
            env="production",
            service=None,
            key="k",
            value=1,
            description=None,
            actor=STAGING_WRITER,
        )
    assert (uow.committed, flag.is_enabled, len(uow.configs.rows)) == (1, False, 0)
    made = configs.create(
        uow, env="staging", service=None, key="k", value=1, description=None, actor=STAGING_WRITER
    )
    assert made.created_by == "stager"


def test_a_delete_is_a_version_and_a_recreate_continues_the_sequence(uow: FakeUnitOfWork) -> None:
    flag = make_flag(uow)
    flags.delete(uow, flag.id, if_match=IfMatch.parse('"1"'), actor=ADMIN)
    tombstone = uow.outbox.events[-1]
    assert (tombstone.op, tombstone.version, tombstone.state) == ("delete", 2, None)
    assert uow.flags.rows == {}
    again = make_flag(uow)
    assert again.version == 3


def test_a_taken_scope_is_refused(uow: FakeUnitOfWork) -> None:
    configs.create(
        uow, env="production", service="svc", key="k", value=1, description=None, actor=ADMIN
    )
    with pytest.raises(AlreadyExists):
        configs.create(
            uow, env="production", service="svc", key="k", value=2, description=None, actor=ADMIN
        )
    configs.create(
        uow, env="production", service=None, key="k", value=3, description=None, actor=ADMIN
    )
    assert len(uow.configs.rows) == 2
