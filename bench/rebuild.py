"""Time to rebuild the read model for 100,000 items, and to hydrate a replica from it.
Reference in the same run: a plain SELECT of the same rows into Python dicts."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

from redis.asyncio import Redis
from sqlalchemy import text

from cache.keys import Keys
from cache.read_model import RedisReadModel
from cache.replica import Replica
from database.engine import make_engine
from database.models import utcnow
from service.propagation import Propagator
from service.store import Store


def insert(url: str, count: int) -> None:
    engine = make_engine(url)
    now = utcnow()
    rows = [
        {"k": f"bench.key.{i:06d}", "v": json.dumps({"limit": i, "name": f"item-{i}"}), "t": now}
        for i in range(count)
    ]
    with engine.begin() as conn:
        for start in range(0, count, 5000):
            conn.execute(
                text(
                    "INSERT INTO app_configurations (config_key, environment, service_name, service_scope,"
                    " config_value, description, version, created_at, updated_at, created_by, updated_by)"
                    " VALUES (:k, 'production', NULL, '', :v, NULL, 1, :t, :t, 'bench', 'bench')"
                ),
                rows[start : start + 5000],
            )
    engine.dispose()


async def measure(url: str, redis_url: str) -> dict[str, float]:
    engine = make_engine(url)
    store = Store(engine, limit=4, retries=3, timeout=30)
    started = time.perf_counter()
    with engine.connect() as conn:
        rows = [
            dict(row._mapping) for row in conn.execute(text("SELECT * FROM app_configurations"))
        ]
    select_seconds = time.perf_counter() - started
    redis = Redis.from_url(redis_url)
    prefix = f"bench-rebuild-{uuid.uuid4().hex[:8]}:"
    read_model = RedisReadModel(redis, Keys(prefix))
    replica = Replica()
    propagator = Propagator(store, read_model, replica, wait=1, relay_interval=1)
    try:
        started = time.perf_counter()
        await propagator.ensure_built("production")
        rebuild_seconds = time.perf_counter() - started
        started = time.perf_counter()
        replica.hydrate("production", await read_model.snapshot("production"))
        hydrate_seconds = time.perf_counter() - started
        assert replica.status()["production"]["configs"] == len(rows)
    finally:
        keys = [key async for key in redis.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()
        engine.dispose()
    return {
        "items": len(rows),
        "select_seconds": select_seconds,
        "rebuild_seconds": rebuild_seconds,
        "hydrate_seconds": hydrate_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--items", type=int, default=100_000)
    args = parser.parse_args()
    insert(args.database_url, args.items)
    print(json.dumps(asyncio.run(measure(args.database_url, args.redis_url))))


if __name__ == "__main__":
    main()
