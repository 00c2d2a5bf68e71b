"""Differential test: our targeting against UnleashClient (PyPI; its Rust engine, Yggdrasil).

Random Unleash documents (tests/differential/generator.py) are imported through `convert` (what
`POST /import/unleash` runs) and evaluated by `aurora_client.targeting`, and bootstrapped into
UnleashClient; both answer `is_enabled` and `get_variant` for random contexts, and must agree
(enabled, variant name, payload, variant enabled, feature_enabled). Where Unleash draws a random
number the case is left out (see `random_dependent`). Nobody here wrote Unleash's answers, and
server and SDK share one module, so this is the check that is not circular.

AURORA_DIFF_CASES (10,000 here, 1,000,000 in `make soak`) counts compared (flag, context) cases.
Document seeds are AURORA_DIFF_BASE_SEED * 10**7 + n; a disagreement prints its seed and a
minimized case, and `AURORA_DIFF_SEED=<seed> pytest tests/differential` reruns that document.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime

import pytest

from tests.differential.generator import (
    Document,
    UnleashContext,
    clock,
    generate,
    random_dependent,
)
from tests.differential.oracle import Unleash, frozen_clock
from tests.differential.sides import (
    Disagreement,
    _ours_or_error,
    build_ours,
    differs,
    minimize,
    unleash_answer,
)

log = logging.getLogger(__name__)

CASES = int(os.environ.get("AURORA_DIFF_CASES", "10000"))
BASE_SEED = int(os.environ.get("AURORA_DIFF_BASE_SEED", "0"))
ONE_SEED = os.environ.get("AURORA_DIFF_SEED")
SHARDS = 2  # one per `make test` worker
CONTEXTS = 25  # per document: UnleashClient's start is cheap, but not free
REPORTED = 5  # disagreements minimized and shown (all are counted)


def run_document(seed: int) -> tuple[int, int, list[Disagreement]]:
    """(compared cases, random cases left out, disagreements) of one document seed."""
    document, contexts = generate(seed, CONTEXTS)
    now = clock(seed)
    with frozen_clock(now):
        return _compare(seed, document, contexts, now)


def _compare(
    seed: int, document: Document, contexts: list[UnleashContext], now: datetime
) -> tuple[int, int, list[Disagreement]]:
    unleash = Unleash(document)
    ours = build_ours(document)
    compared = skipped = 0
    found: list[Disagreement] = []
    for context in contexts:
        for feature in document["features"]:
            name = feature["name"]
            enabled_random, variant_random = random_dependent(document, name, context)
            if enabled_random:
                skipped += 1
                continue
            compared += 1
            theirs = unleash_answer(unleash, name, context)
            mine = _ours_or_error(ours, name, context)
            if differs(theirs, mine, variant_is_random=variant_random):
                found.append(
                    Disagreement(seed, name, document, context, theirs, mine, variant_random, now)
                )
    return compared, skipped, found


def seeds(shard: int) -> list[int] | range:
    if ONE_SEED is not None:
        return [int(ONE_SEED)] if shard == 0 else []
    return range(BASE_SEED * 10**7 + shard, (BASE_SEED + 1) * 10**7, SHARDS)


@pytest.mark.parametrize("shard", range(SHARDS))
def test_agrees_with_unleash_client(shard: int) -> None:
    quota = CASES // SHARDS + (1 if shard < CASES % SHARDS else 0)
    started = time.perf_counter()
    compared = skipped = documents = 0
    disagreements: list[Disagreement] = []
    for seed in seeds(shard):
        if ONE_SEED is None and compared >= quota:
            break
        done, left_out, found = run_document(seed)
        compared += done
        skipped += left_out
        documents += 1
        disagreements += found
    log.info(
        "shard %d: %d cases compared over %d documents (%d random cases left out), "
        "%d disagreements, %.1f s",
        shard,
        compared,
        documents,
        skipped,
        len(disagreements),
        time.perf_counter() - started,
    )
    if disagreements:
        seen = sorted({d.seed for d in disagreements})
        shown = [minimize(d).report() for d in _one_per_seed(disagreements)[:REPORTED]]
        pytest.fail(
            f"{len(disagreements)} of {compared} cases disagree with UnleashClient "
            f"(document seeds {seen[:50]}); the first, minimized:\n\n" + "\n\n".join(shown),
            pytrace=False,
        )


def _one_per_seed(disagreements: list[Disagreement]) -> list[Disagreement]:
    out: dict[int, Disagreement] = {}
    for d in disagreements:
        out.setdefault(d.seed, d)
    return list(out.values())


def test_only_the_cases_left_out_are_random_in_unleash() -> None:
    """Two UnleashClients on the same documents agree on every case the test compares: what
    `random_dependent` leaves in is deterministic in Unleash (and what it leaves out is not
    all of it)."""
    compared = left_out = 0
    for seed in range(BASE_SEED * 10**7, BASE_SEED * 10**7 + 40):
        document, contexts = generate(seed, CONTEXTS)
        one, other = Unleash(document), Unleash(document)
        with frozen_clock(clock(seed)):
            compared_here, left_out_here = _twice(document, contexts, one, other, seed)
        compared += compared_here
        left_out += left_out_here
    assert compared > 1000
    assert 0 < left_out < compared


def _twice(
    document: Document, contexts: list[UnleashContext], one: Unleash, other: Unleash, seed: int
) -> tuple[int, int]:
    """(compared, left out) of one document, asking both clients every deterministic case."""
    compared = left_out = 0
    for context in contexts:
        for feature in document["features"]:
            name = feature["name"]
            enabled_random, variant_random = random_dependent(document, name, context)
            if enabled_random:
                left_out += 1
                continue
            compared += 1
            first = unleash_answer(one, name, context)
            second = unleash_answer(other, name, context)
            assert not differs(first, second, variant_is_random=variant_random), (
                seed,
                name,
                context,
            )
    return compared, left_out
