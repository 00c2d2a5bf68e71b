"""SDK micro-benchmark (issue #5): ns per call, all measured in one run, one process.

  is_enabled / get  - AuroraClient, on a locally cached flag and config
  dict lookup       - a bare dict.get: the floor for any in-memory read
  dict + mmh3       - a dict lookup plus the murmur3 bucket: the floor for a rollout check
  Unleash           - UnleashClient (PyPI) is_enabled on an equivalent locally cached flag
                      (gradual rollout 25 %, stickiness userId, bootstrapped; no server)

Targeting (issue 10), both SDKs bootstrapped with the same state (bench/targeted.py: Aurora's
format and Unleash's client features document, written from one definition):
  targeted flag     is_enabled(key, context=...) on a flag with three constraints (IN on
                    userId, STR_STARTS_WITH and NUM_GT on properties), a segment, two variants
  baseline          a rule with no constraint: what a constraint's cost is measured from
  SEMVER_GT, REGEX  a rule of one such constraint (cost = its figure minus the baseline)
Both SDKs must give every one of 2,000 varied contexts the same answer and variant on these
flags, or the comparison is reported void.

Run through bench/run.sh (which installs UnleashClient into the bench virtualenv only).
"""

from __future__ import annotations

import json
import os
import platform
import random
import sys
import tempfile
import timeit
from pathlib import Path
from typing import Any

import mmh3
from aurora_client import AuroraClient

sys.path.insert(0, str(Path(__file__).parent))
import targeted  # the targeting scenario's flags, in both formats

REPEAT = 7
# The targeting flags beside the benchmark's 100: a rule without constraints, and one constraint
# of a costly operator each (on properties the shared context carries).
EXTRA: dict[str, list[dict[str, Any]]] = {
    "baseline": [],
    "semver": [{"contextName": "version", "operator": "SEMVER_GT", "value": "2.0.0"}],
    "regex": [{"contextName": "email", "operator": "REGEX", "value": r"^[a-z]+@example\.com$"}],
}
CONTEXT: dict[str, Any] = {
    "userId": "123",
    "properties": {
        **targeted.CONTEXT["properties"],
        "version": "2.3.1",
        "email": "ann@example.com",
    },
}


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


def unleash(
    directory: str, document: dict[str, Any] | None = None, name: str = "aurora-bench"
) -> Any:
    from UnleashClient import UnleashClient
    from UnleashClient.cache import FileCache

    cache = FileCache(name, directory=directory)
    cache.bootstrap_from_dict(
        document
        or {
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
        name,
        cache=cache,
        disable_metrics=True,
        disable_registration=True,
        refresh_interval=3600,
    )
    client.initialize_client(fetch_toggles=False)
    return client


def extra_unleash() -> list[dict[str, Any]]:
    return [
        {
            "name": key,
            "enabled": True,
            "strategies": [
                {
                    "name": "flexibleRollout",
                    "parameters": {"rollout": "100", "stickiness": "default", "groupId": key},
                    "constraints": constraints,
                }
            ],
            "variants": [],
        }
        for key, constraints in EXTRA.items()
    ]


def extra_aurora() -> list[dict[str, Any]]:
    return [
        targeted.aurora_flag(key, constraints, segments=[], variants=[])
        for key, constraints in EXTRA.items()
    ]


def contexts(count: int) -> list[dict[str, Any]]:
    """Varied contexts: inside and outside each constraint (and with fields missing)."""
    rng = random.Random(10)
    found = []
    for _ in range(count):
        properties = {
            "country": rng.choice(["DE", "AT", "CH", "FR", "DK", "de"]),
            "appVersion": rng.choice(["1", "2", "2.5", "3", "10", "x"]),
            "version": rng.choice(["1.9.9", "2.0.0", "2.0.1", "2.3.1-beta", "10.0.0", "bad"]),
            "email": rng.choice(["ann@example.com", "Ann@example.com", "bob@example.org"]),
        }
        for name in list(properties):
            if rng.random() < 0.1:
                del properties[name]
        context: dict[str, Any] = {"properties": properties}
        if rng.random() < 0.95:
            context["userId"] = str(rng.randrange(90, 160))
        found.append(context)
    return found


def engine(results: dict[str, float]) -> str | None:
    """The evaluation module alone (no client around it): the floor of the client's figures."""
    try:
        from aurora_client.targeting import Context, Flag, Segment, is_enabled
    except ImportError as error:
        return f"not measured: aurora_client.targeting is missing ({error})"
    state = targeted.aurora_state(extra_aurora())
    flags = {item["flag_key"]: Flag.of(item) for item in state["flags"]}
    segments = {item["name"]: Segment.of(item) for item in state["segments"]}
    env: dict[str, Any] = {
        "is_enabled": is_enabled,
        "flags": flags,
        "segments": segments,
        "context": Context.of(CONTEXT),
        "Context": Context,
        "raw": CONTEXT,
    }
    for key, name in {"flag-000": "targeted flag", **{key: key for key in EXTRA}}.items():
        env["flag"] = flags[key]
        results[f"targeting.is_enabled {name}"] = ns_per_call(
            "is_enabled(flag, context, flags, segments)", env, 200_000
        )
    results["Context.of(dict)"] = ns_per_call("Context.of(raw)", env, 200_000)
    return None


def targeting(results: dict[str, float], directory: str) -> dict[str, Any]:
    """ns per call for the targeting rows; returns what the report needs besides them."""
    skipped = engine(results)
    if skipped:
        return {"skipped": skipped}
    from aurora_client.targeting import Context

    document = targeted.unleash_document(extra_unleash())
    un = unleash(directory, document, "aurora-bench-targeting")
    rows = {"flag-000": "targeted flag", **{key: key for key in EXTRA}}
    env: dict[str, Any] = {"un": un, "plain": CONTEXT}
    for key, name in rows.items():
        results[f"UnleashClient.is_enabled {name}"] = ns_per_call(
            f"un.is_enabled({key!r}, plain)", env, 5_000
        )
    results["UnleashClient.get_variant targeted flag"] = ns_per_call(
        "un.get_variant('flag-000', plain)", env, 5_000
    )
    client = AuroraClient(
        "http://127.0.0.1:9",  # never contacted
        targeted.TARGETED_ENV,
        bootstrap=targeted.aurora_state(extra_aurora()),
    )
    context = Context.of(CONTEXT)
    found: dict[str, Any] = {}
    try:
        client.is_enabled("flag-000", context=context)  # type: ignore[call-arg]
    except TypeError as error:
        found["client_skipped"] = (
            f"not measured: AuroraClient.is_enabled takes no context yet ({error})"
        )
    else:
        env.update(client=client, context=context)
        for key, name in rows.items():
            results[f"AuroraClient.is_enabled {name}"] = ns_per_call(
                f"client.is_enabled({key!r}, context=context)", env, 200_000
            )
        results["AuroraClient.is_enabled targeted flag, dict context"] = ns_per_call(
            "client.is_enabled('flag-000', context=plain)", env, 100_000
        )
        results["AuroraClient.get_variant targeted flag"] = ns_per_call(
            "client.get_variant('flag-000', context=context)", env, 200_000
        )
    # Same answers, or the comparison says nothing: through the client when it takes a context,
    # else through the evaluation module it is built on.
    answer = client_answer(client) if "client_skipped" not in found else module_answer()
    disagreements = []
    for sample in contexts(2000):
        ours_context = Context.of(sample)
        for key in rows:
            ours = answer(key, ours_context)
            theirs = (un.is_enabled(key, sample), un.get_variant(key, sample)["name"])
            if ours != theirs:
                disagreements.append(
                    {"flag": key, "context": sample, "aurora": ours, "unleash": theirs}
                )
    un.destroy()
    return found | {
        "contexts": 2000,
        "compared_through": "AuroraClient" if "client_skipped" not in found else "the module",
        "disagreements": len(disagreements),
        "examples": disagreements[:3],
        "enabled_for_bench_context": answer("flag-000", context)[0],
    }


def client_answer(client: Any) -> Any:
    def answer(key: str, context: Any) -> tuple[bool, str]:
        return client.is_enabled(key, context=context), client.get_variant(
            key, context=context
        ).name

    return answer


def module_answer() -> Any:
    from aurora_client.targeting import Flag, Segment, evaluate

    state = targeted.aurora_state(extra_aurora())
    flags = {item["flag_key"]: Flag.of(item) for item in state["flags"]}
    segments = {item["name"]: Segment.of(item) for item in state["segments"]}

    def answer(key: str, context: Any) -> tuple[bool, str]:
        result = evaluate(flags[key], context, flags, segments)
        return result.enabled, result.variant.name

    return answer


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
        targeting_run = targeting(results, directory)
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
                "targeting": targeting_run,
            }
        )
    )


if __name__ == "__main__":
    main()
