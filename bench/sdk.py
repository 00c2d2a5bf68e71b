"""SDK micro-benchmark (issue #5): ns per call, all measured in one run, one process.

  is_enabled / get  - AuroraClient, on a locally cached flag and config
  dict lookup       - a bare dict.get: the floor for any in-memory read
  dict + mmh3       - a dict lookup plus the murmur3 bucket: the floor for a rollout check
  Unleash           - UnleashClient (PyPI) is_enabled on an equivalent locally cached flag
                      (gradual rollout 25 %, stickiness userId, bootstrapped; no server)

Run through bench/run.sh (which installs UnleashClient into the bench virtualenv only).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import timeit

import mmh3
from aurora_client import AuroraClient

REPEAT = 7


def ns_per_call(stmt: str, env: dict[str, object], number: int) -> float:
    timer = timeit.Timer(stmt, globals=env)
    return min(timer.repeat(repeat=REPEAT, number=number)) / number * 1e9


def aurora() -> AuroraClient:
    return AuroraClient(
        "http://127.0.0.1:9",  # never contacted: not started, served from the bootstrap
        "production",
        "checkout",
        bootstrap={
            "flags": [
                {
                    "flag_key": "new_dashboard",
                    "environment": "production",
                    "is_enabled": True,
                    "rollout_percentage": 25,
                    "version": 1,
                }
            ],
            "configs": [
                {
                    "config_key": "database.max_connections",
                    "config_value": 100,
                    "environment": "production",
                    "service_name": "checkout",
                    "version": 1,
                }
            ],
        },
    )


def unleash(directory: str) -> object:
    from UnleashClient import UnleashClient
    from UnleashClient.cache import FileCache

    cache = FileCache("aurora-bench", directory=directory)
    cache.bootstrap_from_dict(
        {
            "version": 1,
            "features": [
                {
                    "name": "new_dashboard",
                    "enabled": True,
                    "strategies": [
                        {
                            "name": "flexibleRollout",
                            "parameters": {
                                "rollout": "25",
                                "stickiness": "userId",
                                "groupId": "new_dashboard",
                            },
                        }
                    ],
                }
            ],
        }
    )
    client = UnleashClient(
        "http://127.0.0.1:9",
        "aurora-bench",
        cache=cache,
        disable_metrics=True,
        disable_registration=True,
        refresh_interval=3600,
    )
    client.initialize_client(fetch_toggles=False)
    return client


def main() -> None:
    client = aurora()
    plain = {"database.max_connections": 100}
    results: dict[str, float] = {}
    env = {"client": client, "plain": plain, "mmh3": mmh3}
    results["dict lookup"] = ns_per_call("plain.get('database.max_connections')", env, 2_000_000)
    results["dict + mmh3 bucket"] = ns_per_call(
        "plain.get('database.max_connections'); mmh3.hash('new_dashboard:123', 0, signed=False) % 100 + 1",
        env,
        1_000_000,
    )
    results["AuroraClient.get"] = ns_per_call(
        "client.get('database.max_connections')", env, 2_000_000
    )
    results["AuroraClient.is_enabled"] = ns_per_call(
        "client.is_enabled('new_dashboard', '123')", env, 1_000_000
    )
    results["AuroraClient.is_enabled (no user)"] = ns_per_call(
        "client.is_enabled('new_dashboard')", env, 1_000_000
    )
    with tempfile.TemporaryDirectory() as directory:
        un = unleash(directory)
        context = {"userId": "123"}
        env.update(un=un, context=context)
        results["UnleashClient.is_enabled"] = ns_per_call(
            "un.is_enabled('new_dashboard', context)", env, 20_000
        )
        # The comparison is fair only if both decide the same: Unleash's gradual rollout with the
        # flag key as group id is our bucketing, so every user must land the same way.
        users = [f"user-{i}" for i in range(2000)]
        agree = all(
            un.is_enabled("new_dashboard", {"userId": user})
            == client.is_enabled("new_dashboard", user)
            for user in users
        )
        un.destroy()
    if not agree:
        raise SystemExit("Aurora and Unleash disagree on the cohort: the comparison is void")
    print(
        json.dumps(
            {
                "python": sys.version.split()[0],
                "platform": platform.platform(),
                "pid": os.getpid(),
                "cohort_agreement_users": len(users),
                "ns_per_call": results,
            }
        )
    )


if __name__ == "__main__":
    main()
