"""Seeded random Unleash client-features documents and contexts for the differential test.

A document is what Unleash's `GET /api/client/features` answers (`{"version": 1, "features":
[...], "segments": [...]}`): every built-in strategy, constraints of every operator (with
`inverted` and `caseInsensitive`), segments, strategy and flag variants (weights, fix/variable,
stickiness, overrides, payload types), dependencies and non-ASCII names. Contexts draw their
values from the same pools as the constraints, so constraints match often; values that are
invalid for an operator (a bad number, date, semver, regex or CIDR) are drawn on purpose.

`random_dependent` says where Unleash's answer depends on its random number generator (random
stickiness, or default stickiness with neither userId nor sessionId), so the test compares only
what is deterministic. `clock` gives each document the instant both sides read as the time of
the call (oracle.frozen_clock), so a constraint on a missing currentTime is compared too.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

Document = dict[str, Any]
UnleashContext = dict[str, Any]

USER_IDS = ["1", "2", "7", "42", "123", "999", "alice", "Alice", "bøb", "user-ø-1", "", "0"]
SESSION_IDS = ["s1", "s2", "S1", "sess-42", "7", "séance"]
REMOTE_ADDRESSES = [
    "10.0.0.1",
    "10.1.2.3",
    "192.168.1.7",
    "127.0.0.1",
    "2001:db8::1",
    "::1",
    "not-an-ip",
    "10.0.0.256",
]
ENVIRONMENTS = ["dev", "default", "production", "Prod", "stage"]
APP_NAMES = ["shop", "Shop", "web-app", "app-ø"]
# An absent currentTime is the frozen instant of `clock`, which lands on or next to these.
DATES = [
    "2020-01-01T00:00:00Z",
    "2020-01-01T00:00:00.000Z",
    "2024-06-15T12:30:00.000Z",
    "2024-06-15T14:30:00+02:00",
    "2031-01-01T00:00:00+02:00",
    "2099-12-31T23:59:59Z",
    "2024-06-15T12:30:00.500000+00:00",  # as Python writes the time of the call
    "2020-01-01T00:00:00+00:00",
    "2026-03-01T08:15:42.000+00:00",
    "2024-06-15",
    "2025-13-01T00:00:00Z",
    "yesterday",
]
NUMBERS = ["0", "1", "17", "18", "18.0", "18.5", "-3", "1e3", "+5", " 7", "1_0", "abc", "", "-0"]
SEMVERS = [
    "1.2.3",
    "1.2.3-beta.1",
    "1.2.3-beta.2",
    "1.2.3-rc.1",
    "2.0.0",
    "1.10.0",
    "0.9.9",
    "1.2",
    "v1.2.3",
    "1.2.3+build.5",
    "01.2.3",
    "garbage",
]
REGEXES = [
    "^1",
    "^[a-z]+$",
    "\\d",
    "^\\d+$",
    "(?i)^de$",
    "ø",
    "^.{2}$",
    "[",
    "(a|b",
    "^(a+)+$",
    ".*",
    "\\bgold\\b",
    "l{2,}",
    "^(DE|US)$",
    "\\p{L}+",
]
CIDRS = [
    "10.0.0.0/8",
    "10.0.0.1",
    "192.168.1.0/24",
    "2001:db8::/32",
    "127.0.0.1/32",
    "::1/128",
    "garbage",
    "10.0.0.0/33",
    "300.1.1.1/8",
]
# Constraint values Unleash refuses to compile: the whole flag is then off in UnleashClient
# (Yggdrasil compiles a flag's strategies into one rule), so they are drawn rarely.
INVALID_VALUES = [
    "2024-06-15T12:30:00.500000+00:00",  # a context date, not a constraint's (6 digits)
    "1_0",
    "abc",
    "",
    "2024-06-15",
    "2025-13-01T00:00:00Z",
    "yesterday",
    "01.2.3",
    "garbage",
]
# Custom properties, with their value pools. No `hostname`: UnleashClient 6.9.1's engine never
# matches applicationHostname (it has no hostname source in the Python build), while our import
# maps it onto a `hostname` context field; without the field both sides answer false.
PROPERTIES: dict[str, list[str]] = {
    "country": ["DE", "de", "US", "NO", "Ørsta"],
    "tier": ["gold", "Gold", "silver", "bronze-plus", "gold gold"],
    "version": SEMVERS,
    "age": NUMBERS,
    "signup": DATES,
    "email": ["a@example.com", "B@Example.COM", "x@test.org"],
    "tenant": ["t1", "t2", "t3"],
    "länd": ["ja", "nej", "JA"],
}
STANDARD_POOLS: dict[str, list[str]] = {
    "userId": USER_IDS,
    "sessionId": SESSION_IDS,
    "remoteAddress": REMOTE_ADDRESSES,
    "environment": ENVIRONMENTS,
    "appName": APP_NAMES,
    "currentTime": DATES,
}
# A context name no context ever carries.
MISSING_FIELD = "nothere"

OPERATORS_LIST = ["IN", "NOT_IN", "STR_STARTS_WITH", "STR_ENDS_WITH", "STR_CONTAINS", "IN_CIDR"]
OPERATORS_NUM = ["NUM_EQ", "NUM_GT", "NUM_GTE", "NUM_LT", "NUM_LTE"]
OPERATORS_DATE = ["DATE_AFTER", "DATE_BEFORE"]
OPERATORS_SEMVER = ["SEMVER_EQ", "SEMVER_GT", "SEMVER_GTE", "SEMVER_LT", "SEMVER_LTE"]
OPERATORS = [*OPERATORS_LIST, *OPERATORS_NUM, *OPERATORS_DATE, *OPERATORS_SEMVER, "REGEX"]

FLAG_NAMES = [
    "checkout",
    "Hellø_Wørld",
    "🚀-launch",
    "new.ui",
    "ñandú",
    "beta_search",
    "Äpfel",
    "x",
]
GROUP_IDS = ["grp", "Gruppe-ø", "checkout", "a"]
VARIANT_NAMES = ["blue", "green", "red", "ø-variant", "A", "b"]
PERCENTAGES = ["0", "1", "25", "50", "99", "100", "33", "75"]
ODD_PERCENTAGES = ["", "abc", "150", "50.5", "-1"]
PAYLOADS: list[dict[str, str]] = [
    {"type": "string", "value": "#00f"},
    {"type": "string", "value": ""},
    {"type": "number", "value": "42"},
    {"type": "json", "value": '{"a": [1, 2]}'},
    {"type": "csv", "value": "a,b,c"},
    {"type": "string", "value": "ünïcødé"},
]


@dataclass(frozen=True)
class Knobs:
    """How often the generator draws its rarer shapes (probabilities, 0..1)."""

    odd_percentage: float = 0.03
    missing_group_id: float = 0.1
    invalid_value: float = 0.03
    unknown_operator: float = 0.01
    missing_segment: float = 0.01
    missing_parent: float = 0.05
    value_in_values: float = 0.02


@dataclass
class _Gen:
    rng: random.Random
    knobs: Knobs
    names: list[str] = field(default_factory=list)
    segment_ids: list[int] = field(default_factory=list)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def pick(self, seq: Sequence[Any]) -> Any:
        return self.rng.choice(seq)

    def some(self, seq: Sequence[str], low: int, high: int) -> list[str]:
        return [self.pick(seq) for _ in range(self.rng.randint(low, high))]

    # Context fields and the values a constraint compares them against.

    def context_name(self) -> str:
        r = self.rng.random()
        if r < 0.45:
            return str(self.pick(list(STANDARD_POOLS)))
        if r < 0.95:
            return str(self.pick(list(PROPERTIES)))
        return MISSING_FIELD

    def pool(self, name: str) -> list[str]:
        return STANDARD_POOLS.get(name) or PROPERTIES.get(name) or ["x", "y"]

    def string_piece(self, name: str) -> str:
        value = str(self.pick(self.pool(name)))
        if self.chance(0.3):
            value = value.upper() if self.chance(0.5) else value.lower()
        cut = self.rng.randint(0, len(value))
        kind = self.rng.random()
        if kind < 0.33:
            return value[:cut]
        if kind < 0.66:
            return value[cut:]
        return value[cut // 2 : cut]

    def single_value(self, operator: str, name: str) -> str:
        if self.chance(self.knobs.invalid_value):
            return str(self.pick(self.pick([INVALID_VALUES, self.pool(name)])))
        if operator in OPERATORS_NUM:
            pool = NUMBERS
        elif operator in OPERATORS_DATE:
            pool = DATES
        elif operator in OPERATORS_SEMVER:
            pool = SEMVERS
        else:
            pool = REGEXES
        return str(self.pick([v for v in pool if v not in INVALID_VALUES]))

    def list_values(self, operator: str, name: str) -> list[str]:
        if operator == "IN_CIDR":
            return self.some(CIDRS, 0, 3)
        if operator in ("IN", "NOT_IN"):
            values = self.some(self.pool(name), 0, 4)
            if self.chance(0.2):
                values = [v.upper() for v in values]
            return values
        return [self.string_piece(name) for _ in range(self.rng.randint(0, 3))]

    def constraint(self) -> dict[str, Any]:
        operator = str(self.pick(OPERATORS))
        name = "remoteAddress" if operator == "IN_CIDR" and self.chance(0.8) else None
        name = name or self.context_name()
        out: dict[str, Any] = {"contextName": name, "operator": operator}
        if operator in OPERATORS_LIST:
            out["values"] = self.list_values(operator, name)
        else:
            value = self.single_value(operator, name)
            if self.chance(self.knobs.value_in_values):
                out["values"] = [value]
            else:
                out["value"] = value
                if self.chance(0.3):
                    out["values"] = []
        if self.chance(0.25):
            out["inverted"] = True
        elif self.chance(0.2):
            out["inverted"] = False
        if self.chance(0.3):
            out["caseInsensitive"] = True
        elif self.chance(0.1):
            out["caseInsensitive"] = False
        if self.chance(self.knobs.unknown_operator):
            out["operator"] = "STR_NOT_A_REAL_OPERATOR"
        return out

    def constraints(self, high: int) -> list[dict[str, Any]]:
        count = min(self.rng.randint(0, high), self.rng.randint(0, high))
        return [self.constraint() for _ in range(count)]

    # Strategies.

    def percentage(self) -> str:
        if self.chance(self.knobs.odd_percentage):
            return str(self.pick(ODD_PERCENTAGES))
        return str(self.pick(PERCENTAGES))

    def strategy(self, flag: str) -> dict[str, Any]:
        kind = str(
            self.pick(
                [
                    "default",
                    "userWithId",
                    "gradualRolloutUserId",
                    "gradualRolloutSessionId",
                    "gradualRolloutRandom",
                    "remoteAddress",
                    "applicationHostname",
                    "flexibleRollout",
                    "flexibleRollout",
                    "flexibleRollout",
                ]
            )
        )
        params: dict[str, str] = {}
        group = str(self.pick([*GROUP_IDS, flag, flag]))
        if kind == "userWithId":
            params["userIds"] = ", ".join(self.some(USER_IDS, 0, 4))
        elif kind in ("gradualRolloutUserId", "gradualRolloutSessionId"):
            params["percentage"] = self.percentage()
            if not self.chance(self.knobs.missing_group_id):
                params["groupId"] = group
        elif kind == "gradualRolloutRandom":
            # Unleash draws 1..99 below the percentage: 0, 1 and from 100 up are certain.
            params["percentage"] = str(self.pick(["0", "1", "100", "150", "2", "50", "99"]))
        elif kind == "remoteAddress":
            params["IPs"] = ", ".join(self.some([*REMOTE_ADDRESSES[:6], *CIDRS[:6]], 0, 3))
        elif kind == "applicationHostname":
            params["hostNames"] = ",".join(self.some(["web-1", "vm", "localhost"], 0, 2))
        elif kind == "flexibleRollout":
            stickiness = str(self.pick(["default", "default", "userId", "sessionId", "tenant", ""]))
            if stickiness == "" and self.chance(0.5):
                stickiness = "random"
            rollout = self.percentage()
            if stickiness == "random":
                rollout = str(self.pick(["0", "100"]))
            params["rollout"] = rollout
            if stickiness:
                params["stickiness"] = stickiness
            if not self.chance(self.knobs.missing_group_id):
                params["groupId"] = group
        out: dict[str, Any] = {"name": kind, "parameters": params}
        if kind == "default" and self.chance(0.3):
            out["parameters"] = {}
        constraints = self.constraints(3)
        if constraints or self.chance(0.3):
            out["constraints"] = constraints
        if self.segment_ids and self.chance(0.35):
            out["segments"] = self.rng.sample(
                self.segment_ids, self.rng.randint(1, min(2, len(self.segment_ids)))
            )
        if self.chance(self.knobs.missing_segment):
            out["segments"] = [*out.get("segments", []), 9999]
        if self.chance(0.3):
            out["variants"] = self.variants(strategy=True)
        return out

    # Variants.

    def weights(self, count: int) -> list[tuple[int, str]]:
        """(weight, weightType) pairs: as Unleash's server hands them out (fixed ones kept,
        the rest of 1000 shared by the variable ones) or as raw small weights."""
        if count == 0:
            return []
        if self.chance(0.5):
            fixed = {i: self.rng.randint(0, 400) for i in range(count) if self.chance(0.3)}
            if len(fixed) == count:
                fixed.pop(count - 1)
            rest = max(0, 1000 - sum(fixed.values()))
            variable = [i for i in range(count) if i not in fixed]
            share, extra = divmod(rest, len(variable))
            out = []
            for i in range(count):
                if i in fixed:
                    out.append((fixed[i], "fix"))
                else:  # fixVariantWeights: the first variable ones get the remainder
                    out.append((share + (1 if variable.index(i) < extra else 0), "variable"))
            if sum(w for w, _ in out) == 0:
                out[0] = (1000, out[0][1])
            return out
        raw = [(self.rng.choice([0, 1, 1, 2, 5, 33, 50]), "variable") for _ in range(count)]
        if sum(w for w, _ in raw) == 0:
            raw[0] = (1, "variable")
        return raw

    def variants(self, *, strategy: bool) -> list[dict[str, Any]]:
        count = self.rng.randint(0 if strategy else 1, 4)
        names = self.rng.sample(VARIANT_NAMES, count)
        stickiness = self.pick(["default", "userId", "sessionId", "tenant", None])
        out: list[dict[str, Any]] = []
        for name, (weight, weight_type) in zip(names, self.weights(count), strict=True):
            variant: dict[str, Any] = {"name": name, "weight": weight, "weightType": weight_type}
            if stickiness is not None:
                variant["stickiness"] = stickiness
            if self.chance(0.8):
                variant["payload"] = dict(self.pick(PAYLOADS))
            if not strategy and self.chance(0.25):
                field_name = self.context_name()
                variant["overrides"] = [
                    {"contextName": field_name, "values": self.some(self.pool(field_name), 1, 3)}
                ]
            out.append(variant)
        return out

    # Features and the document.

    def feature(self, name: str, all_names: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": name,
            "description": None,
            "type": "release",
            "project": "default",
            "enabled": self.chance(0.85),
            "stale": False,
            "impressionData": False,
            "strategies": [self.strategy(name) for _ in range(self.rng.randint(0, 4))],
        }
        if self.chance(0.45):
            out["variants"] = self.variants(strategy=False)
        if self.chance(0.3):
            deps = []
            for _ in range(self.rng.randint(1, 2)):
                parent = str(self.pick(all_names))
                if self.chance(self.knobs.missing_parent):
                    parent = "no-such-parent"
                dep: dict[str, Any] = {"feature": parent}
                if self.chance(0.5):
                    dep["enabled"] = self.chance(0.7)
                if self.chance(0.35):
                    dep["variants"] = self.rng.sample(VARIANT_NAMES, self.rng.randint(0, 2))
                deps.append(dep)
            out["dependencies"] = deps
        return out

    def segments(self) -> list[dict[str, Any]]:
        out = []
        for sid in range(1, self.rng.randint(0, 4) + 1):
            segment: dict[str, Any] = {"id": sid, "constraints": self.constraints(3)}
            if self.chance(0.5):
                segment["name"] = f"segment-ø-{sid}"
            out.append(segment)
            self.segment_ids.append(sid)
        return out

    def document(self) -> Document:
        segments = self.segments()
        count = self.rng.randint(1, 6)
        names = [f"{self.pick(FLAG_NAMES)}-{i}" for i in range(count)]
        features = [self.feature(name, names) for name in names]
        return {"version": 1, "features": features, "segments": segments}

    def context(self) -> UnleashContext:
        ctx: UnleashContext = {}
        for name, p in (
            ("userId", 0.7),
            ("sessionId", 0.5),
            ("remoteAddress", 0.6),
            ("environment", 0.6),
            ("appName", 0.5),
            ("currentTime", 0.6),
        ):
            if self.chance(p):
                ctx[name] = self.pick(STANDARD_POOLS[name])
        properties = {
            name: self.pick(pool) for name, pool in PROPERTIES.items() if self.chance(0.6)
        }
        if properties or self.chance(0.3):
            ctx["properties"] = properties
        # Unleash's Python SDK moves unknown top-level keys into properties.
        if self.chance(0.15):
            name = str(self.pick(list(PROPERTIES)))
            ctx[name] = self.pick(PROPERTIES[name])
        return ctx


def generate(
    seed: int, contexts: int, knobs: Knobs = Knobs()
) -> tuple[Document, list[UnleashContext]]:
    """The document and the contexts of one seed (the same seed, the same case, always)."""
    gen = _Gen(random.Random(seed), knobs)
    document = gen.document()
    return document, [gen.context() for _ in range(contexts)]


def clock(seed: int) -> datetime:
    """The instant both sides take for the time of the call in this document (a context without
    currentTime gets it): on, or a second or a fraction next to, one of DATES; on a whole second
    or not (Python's isoformat then writes no fraction)."""
    rng = random.Random(f"clock-{seed}")
    base = datetime.fromisoformat(
        rng.choice(
            [
                "2020-01-01T00:00:00+00:00",
                "2024-06-15T12:30:00+00:00",
                "2030-12-31T22:00:00+00:00",
                "2026-03-01T08:15:42+00:00",
            ]
        )
    )
    shift = timedelta(seconds=rng.choice([-1, 0, 0, 1]))
    fraction = timedelta(microseconds=rng.choice([0, 0, 1, 500_000, rng.randint(1, 999_999)]))
    return (base + shift + fraction).astimezone(UTC)


# Where Unleash's answer is random: excluded from the comparison.


def _seed(stickiness: str | None, ctx: Mapping[str, Any]) -> str | None:
    """The stickiness value Unleash hashes, or None when it draws a random number."""
    if stickiness in (None, "default"):
        uid = ctx.get("userId")
        return uid if uid is not None else ctx.get("sessionId")
    if stickiness == "random":
        return None
    return _value(stickiness, ctx)


def _value(name: str, ctx: Mapping[str, Any]) -> str | None:
    if name in STANDARD_POOLS:
        return ctx.get(name)
    props = {
        **{k: v for k, v in ctx.items() if k not in STANDARD_POOLS and k != "properties"},
        **ctx.get("properties", {}),
    }
    value = props.get(name)
    return None if value is None else str(value)


def _strategy_random(strategy: Mapping[str, Any], ctx: Mapping[str, Any]) -> bool:
    params = strategy.get("parameters") or {}
    if strategy["name"] == "flexibleRollout":
        rollout = params.get("rollout", "")
        return rollout not in ("0", "100") and _seed(params.get("stickiness"), ctx) is None
    if strategy["name"] == "gradualRolloutRandom":
        percentage = params.get("percentage", "")
        return percentage.isdigit() and 1 < int(percentage) < 100
    return False


def _variants_random(
    variants: Sequence[Mapping[str, Any]], stickiness: str | None, ctx: Mapping[str, Any]
) -> bool:
    return len(variants) > 1 and _seed(stickiness, ctx) is None


def _flag_random(feature: Mapping[str, Any], ctx: Mapping[str, Any]) -> tuple[bool, bool]:
    """(enabled is random, variant is random) for this flag alone."""
    strategies = feature.get("strategies") or []
    enabled = any(_strategy_random(s, ctx) for s in strategies)
    variant = any(
        _variants_random(
            s.get("variants") or [], (s.get("parameters") or {}).get("stickiness"), ctx
        )
        for s in strategies
    )
    flag_variants = feature.get("variants") or []
    first = flag_variants[0].get("stickiness") if flag_variants else None
    variant = variant or _variants_random(flag_variants, first, ctx)
    return enabled, variant


def random_dependent(document: Document, name: str, ctx: Mapping[str, Any]) -> tuple[bool, bool]:
    """(the enabled answer may be random, the variant may be random) for flag `name`.

    Conservative: any strategy of the flag that may draw a random number taints the flag, and
    a parent whose answer or variant may be random taints its children entirely.
    """
    by_name = {f["name"]: f for f in document["features"]}
    feature = by_name[name]
    enabled, variant = _flag_random(feature, ctx)
    for dep in feature.get("dependencies") or []:
        parent = by_name.get(dep["feature"])
        if parent is not None and any(_flag_random(parent, ctx)):
            enabled = True
    return enabled, enabled or variant


def referenced(document: Document, names: Iterable[str]) -> set[str]:
    """The flags `names` and every parent they depend on (one level, as Unleash evaluates)."""
    by_name = {f["name"]: f for f in document["features"]}
    out = set(names)
    for name in list(out):
        for dep in by_name[name].get("dependencies") or []:
            if dep["feature"] in by_name:
                out.add(dep["feature"])
    return out
