"""Building a read model in tests the way the service does: under the rebuild lock."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from cache.read_model import EnvironmentItems, RedisReadModel, Tombstone


async def build(
    model: RedisReadModel,
    environment: str,
    *,
    configs: Iterable[dict[str, Any]] = (),
    flags: Iterable[dict[str, Any]] = (),
    segments: Iterable[dict[str, Any]] = (),
    tombstones: Iterable[Tombstone] = (),
    sequence: dict[int, int] | None = None,
    force: bool = False,
) -> str | None:
    """Take the lock, rebuild, release: the new epoch, or None if one existed (without force)."""
    token = uuid.uuid4().hex
    assert await model.lock(environment, token, 10_000), "the rebuild lock is taken"
    try:
        items = EnvironmentItems(
            configs=list(configs),
            flags=list(flags),
            segments=list(segments),
            tombstones=list(tombstones),
            sequence=sequence or {},
        )
        return await model.rebuild(environment, items, token=token, force=force)
    finally:
        await model.unlock(environment, token)
