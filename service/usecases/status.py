"""Counts for /status."""

from __future__ import annotations

from database.uow import UnitOfWork


def counts(uow: UnitOfWork) -> dict[str, int]:
    with uow:
        return {"configurations": uow.configs.count(), "feature_flags": uow.flags.count()}
