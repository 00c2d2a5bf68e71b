"""Write throughput with concurrent writers in one environment, on MariaDB (issue 9).

Every change now bumps its environment's committed sequence (one row per environment, locked
from that update to the commit), so all writers of an environment queue on that row for the
last moments of their transactions. This measures what that costs: N writers, each updating
keys of its own (no contention on items), through the same Store and use case as the API, for a
fixed time. Run it against two checkouts to compare (bench/run.sh does it for the current one):

    python bench/writes.py --url mysql+pymysql://root@127.0.0.1:3306/DB --writers 8 --seconds 10

Prints one JSON line: writes, seconds, writes_per_second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from database.engine import make_engine
from database.migrations import upgrade_to_head
from service.principal import ADMIN, Principal
from service.store import Store
from service.usecases import configs

ACTOR = Principal("bench", frozenset({ADMIN}))


async def writer(store: Store, number: int, deadline: float) -> int:
    done = 0
    while time.monotonic() < deadline:
        await store.run(
            configs.set_value,
            env="production",
            service=None,
            key=f"bench.writer{number}.key{done % 50}",
            value=done,
            description=None,
            if_match=None,
            actor=ACTOR,
        )
        done += 1
    return done


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    engine = make_engine(args.url, pool_size=args.writers, max_overflow=0, timeout=5.0)
    upgrade_to_head(engine)
    store = Store(engine, limit=args.writers, retries=8, timeout=5.0)
    await asyncio.gather(*(writer(store, n, time.monotonic() + 1.0) for n in range(args.writers)))
    started = time.monotonic()
    counts = await asyncio.gather(
        *(writer(store, n, started + args.seconds) for n in range(args.writers))
    )
    elapsed = time.monotonic() - started
    engine.dispose()
    total = sum(counts)
    print(
        json.dumps(
            {
                "writers": args.writers,
                "writes": total,
                "seconds": round(elapsed, 3),
                "writes_per_second": round(total / elapsed, 1),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
