"""Unleash's client features document mapped onto our targeting format (docs/TARGETING.md).

The import keeps Unleash's semantics exactly, including what a native write would refuse: a
constraint Unleash treats as never matching (or that makes its engine keep the flag off), a
prerequisite on a missing parent, a prerequisite cycle. Those are kept and listed as warnings.
Each built-in strategy becomes one rule:

- default: a rule without constraints at 100 %.
- userWithId: IN on userId over the comma-separated `userIds` (trimmed).
- gradualRolloutUserId / gradualRolloutSessionId: `percentage` on userId / sessionId stickiness
  with the strategy's `groupId` (both required, else the rule never matches, as in Unleash).
- gradualRolloutRandom: `percentage` on random stickiness (Unleash's draw is 1..99 below the
  percentage: never on at 1 %, always at 100 % and above; random_percentage).
- remoteAddress: IN_CIDR on remoteAddress over `IPs` (an address is its own /32 or /128; invalid
  entries are ignored, as Unleash does).
- applicationHostname: IN on the `hostname` context property, case-insensitive, over `hostNames`.
- flexibleRollout: `rollout` with `stickiness` (default `default`) and `groupId` (without one,
  `group_id` null: the key of the flag evaluated, which in a prerequisite check is the dependent
  flag's, as in Unleash).
Strategy variants hash with the strategy's `stickiness` parameter (else `default`) and its
`groupId` (else the flag key), whichever strategy it is, as Unleash picks them.
A strategy's constraints, segments and variants carry over; a custom strategy is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aurora_client.targeting.operators import (
    LIST_OPERATORS,
    compile_constraint,
    parse_network,
)
from aurora_client.targeting.prerequisites import find_cycle


class UnsupportedStrategy(ValueError):
    """A flag uses a custom strategy, which only the SDK that defines it can evaluate."""

    def __init__(self, flag: str, strategy: str) -> None:
        super().__init__(f"flag {flag!r} uses the custom strategy {strategy!r}")
        self.flag = flag
        self.strategy = strategy


@dataclass(frozen=True)
class Conversion:
    flags: list[dict[str, Any]]
    segments: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)


def _segment_name(segment: Mapping[str, Any]) -> str:
    name = segment.get("name")
    return name if isinstance(name, str) and name else f"segment-{segment.get('id')}"


def _constraint(data: Mapping[str, Any], where: str, warnings: list[str]) -> dict[str, Any]:
    operator = data.get("operator")
    values = data.get("values")
    value = data.get("value")
    out: dict[str, Any] = {
        "context_name": data.get("contextName"),
        "operator": operator,
        "values": [v if isinstance(v, str) else str(v) for v in values or [] if v is not None],
        "value": value if value is None or isinstance(value, str) else str(value),
        "inverted": data.get("inverted") is True,
        # Unleash compares IN/NOT_IN exactly whatever caseInsensitive says; ours would not.
        "case_insensitive": data.get("caseInsensitive") is True
        and operator not in ("IN", "NOT_IN", "IN_CIDR"),
    }
    compiled = compile_constraint(out)
    if compiled.broken is not None:
        warnings.append(f"{where}: {compiled.broken}; Unleash keeps this flag off for everyone")
    elif compiled.never is not None:
        warnings.append(f"{where}: {compiled.never}")
    elif operator == "IN_CIDR":
        _warn_bad_networks(out["values"], where, warnings)
    if operator in LIST_OPERATORS:
        out["value"] = None
    return out


_USIZE = 2**64


def _percentage(raw: Any) -> int | None:
    """A strategy's percentage parameter as Unleash's engine reads it (an unsigned integer),
    or None when it does not parse (the strategy then never matches)."""
    text = raw if isinstance(raw, str) else str(raw) if isinstance(raw, int) else None
    if text is None or not text.isascii() or not text.isdigit():
        return None
    number = int(text)
    return number if number < _USIZE else None  # Rust's usize parsing fails above


def _variants(raw: Any, *, strategy: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """A feature's variants (`strategy` None) or a strategy's. Unleash picks a strategy's
    variants with the strategy's `stickiness` parameter (else `default`), whatever the variants
    say and whatever the strategy's own rollout hashes: each variant gets that stickiness."""
    sticky = None
    if strategy is not None:
        param = (strategy.get("parameters") or {}).get("stickiness")
        sticky = param if isinstance(param, str) and param else "default"
    out = []
    for data in raw or []:
        variant: dict[str, Any] = {
            "name": data.get("name"),
            "weight": data.get("weight", 0),
            "weight_type": data.get("weightType") or "variable",
            "stickiness": sticky or data.get("stickiness") or "default",
            "payload": None,
            "overrides": [],
        }
        payload = data.get("payload")
        if isinstance(payload, Mapping):
            variant["payload"] = {"type": payload.get("type"), "value": payload.get("value")}
        if strategy is None:  # Unleash's engine ignores overrides on strategy variants
            variant["overrides"] = [
                {"context_name": o.get("contextName"), "values": list(o.get("values") or [])}
                for o in data.get("overrides") or []
            ]
        out.append(variant)
    return out


#: What a strategy becomes: its own constraints and rollout, or why it never matches.
_Mapped = tuple[list[dict[str, Any]], dict[str, Any]] | str


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",")]


def _rollout(percentage: int, stickiness: str, group_id: str | None) -> dict[str, Any]:
    return {"percentage": percentage, "stickiness": stickiness, "group_id": group_id}


def _default(params: Mapping[str, Any]) -> _Mapped:
    return [], _rollout(100, "default", None)


def _user_with_id(params: Mapping[str, Any]) -> _Mapped:
    user_ids = params.get("userIds")
    if not isinstance(user_ids, str):
        return "no userIds"
    return [_list("userId", "IN", _split(user_ids))], _rollout(100, "default", None)


def _gradual(stickiness: str) -> Callable[[Mapping[str, Any]], _Mapped]:
    def mapped(params: Mapping[str, Any]) -> _Mapped:
        percentage = _percentage(params.get("percentage"))
        group = params.get("groupId")
        if percentage is None or not isinstance(group, str):
            return "a percentage and a groupId are required"
        return [], _rollout(percentage, stickiness, group)

    return mapped


def _random(params: Mapping[str, Any]) -> _Mapped:
    percentage = _percentage(params.get("percentage"))
    if percentage is None:
        return "no percentage"
    return [], _rollout(random_percentage(percentage), "random", None)


def random_percentage(percentage: int) -> int:
    """gradualRolloutRandom's `percentage` p as our random rollout. Unleash's engine draws
    1..99 and holds when the draw is below p: never at 1 (nor 0), always from 100 up (150
    included), (p - 1) / 99 between; the nearest whole percentage of that."""
    if percentage >= 100:
        return 100
    return max(0, round((percentage - 1) * 100 / 99))


def _flexible(params: Mapping[str, Any]) -> _Mapped:
    percentage = _percentage(params.get("rollout"))
    if percentage is None:
        return "no rollout percentage"
    group = params.get("groupId")
    stickiness = params.get("stickiness")
    return [], _rollout(
        percentage,
        stickiness if isinstance(stickiness, str) and stickiness else "default",
        group if isinstance(group, str) else None,
    )


def _remote_address(params: Mapping[str, Any]) -> _Mapped:
    ips = params.get("IPs")
    if not isinstance(ips, str):
        return "no IPs"
    return [_list("remoteAddress", "IN_CIDR", _split(ips))], _rollout(100, "default", None)


def _hostname(params: Mapping[str, Any]) -> _Mapped:
    hosts = params.get("hostNames")
    # Unleash answers "" when no host names are set; its engine compares lower-cased names.
    names = [h.lower() for h in _split(hosts if isinstance(hosts, str) else "")]
    constraint = _list("hostname", "IN", names)
    constraint["case_insensitive"] = True
    return [constraint], _rollout(100, "default", None)


_STRATEGIES: dict[str, Callable[[Mapping[str, Any]], _Mapped]] = {
    "default": _default,
    "userWithId": _user_with_id,
    "gradualRolloutUserId": _gradual("userId"),
    "gradualRolloutSessionId": _gradual("sessionId"),
    "gradualRolloutRandom": _random,
    "remoteAddress": _remote_address,
    "applicationHostname": _hostname,
    "flexibleRollout": _flexible,
}


def _rule(
    flag: str,
    index: int,
    strategy: Mapping[str, Any],
    segment_names: Mapping[Any, str],
    warnings: list[str],
) -> dict[str, Any]:
    name = strategy.get("name")
    mapper = _STRATEGIES.get(name) if isinstance(name, str) else None
    if mapper is None:
        raise UnsupportedStrategy(flag, str(name))
    where = f"flag {flag!r} strategy {index} ({name})"
    mapped = mapper(strategy.get("parameters") or {})
    if isinstance(mapped, str):
        warnings.append(f"{where}: {mapped}; the strategy never matches, as in Unleash")
        constraints: list[dict[str, Any]] = []
        rollout = _rollout(0, "default", None)
    else:
        constraints, rollout = mapped
        group = (strategy.get("parameters") or {}).get("groupId")
        if rollout["group_id"] is None and isinstance(group, str):
            # Unleash hashes any strategy's variants with its groupId parameter.
            rollout["group_id"] = group
    if rollout["percentage"] > 100:
        warnings.append(f"{where}: rollout above 100; Unleash keeps this flag off for everyone")
    for constraint in constraints:
        if constraint["operator"] == "IN_CIDR":
            _warn_bad_networks(constraint["values"], where, warnings)
    for c_index, data in enumerate(strategy.get("constraints") or []):
        constraints.append(_constraint(data, f"{where} constraint {c_index}", warnings))
    segments = []
    for segment_id in strategy.get("segments") or []:
        segment_name = segment_names.get(segment_id)
        if segment_name is None:
            segment_name = f"segment-{segment_id}"
            warnings.append(f"{where}: segment {segment_id} not found; Unleash keeps this flag off")
        segments.append(segment_name)
    return {
        "id": f"r{index + 1}",
        "constraints": constraints,
        "segments": segments,
        "rollout": rollout,
        "variants": _variants(strategy.get("variants"), strategy=strategy),
    }


def _warn_bad_networks(values: list[str], where: str, warnings: list[str]) -> None:
    bad = [v for v in values if parse_network(v) is None]
    if bad:
        warnings.append(f"{where}: ignored entries that are not addresses or CIDR blocks: {bad}")


def _list(context_name: str, operator: str, values: list[str]) -> dict[str, Any]:
    return {
        "context_name": context_name,
        "operator": operator,
        "values": values,
        "value": None,
        "inverted": False,
        "case_insensitive": False,
    }


def convert(document: Mapping[str, Any]) -> Conversion:
    """The flags and segments of Unleash's client features document ({"version", "features",
    "segments"}, what GET /api/client/features answers), in our format, with warnings.

    Raises UnsupportedStrategy for a custom strategy."""
    warnings: list[str] = []
    segments = []
    segment_names: dict[Any, str] = {}
    for data in document.get("segments") or []:
        name = _segment_name(data)
        segment_names[data.get("id")] = name
        where = f"segment {name!r}"
        segments.append(
            {
                "name": name,
                "description": data.get("description"),
                "constraints": [
                    _constraint(c, f"{where} constraint {i}", warnings)
                    for i, c in enumerate(data.get("constraints") or [])
                ],
            }
        )
    features = list(document.get("features") or [])
    keys = {f.get("name") for f in features}
    flags = []
    for feature in features:
        key = str(feature.get("name"))
        rules = [
            _rule(key, i, s, segment_names, warnings)
            for i, s in enumerate(feature.get("strategies") or [])
        ]
        prerequisites = []
        for dependency in feature.get("dependencies") or []:
            parent = str(dependency.get("feature"))
            if parent not in keys:
                warnings.append(f"flag {key!r}: prerequisite {parent!r} not found; never holds")
            prerequisites.append(
                {
                    "flag_key": parent,
                    "enabled": dependency.get("enabled") is not False,
                    "variants": list(dependency.get("variants") or []),
                }
            )
        flags.append(
            {
                "flag_key": key,
                "flag_name": key,
                "description": feature.get("description"),
                "is_enabled": feature.get("enabled") is True,
                # A feature without strategies is on for everyone while enabled (Unleash).
                "rollout_percentage": 100,
                "rules": rules,
                "variants": _variants(feature.get("variants"), strategy=None),
                "prerequisites": prerequisites,
            }
        )
    graph = {f["flag_key"]: [p["flag_key"] for p in f["prerequisites"]] for f in flags}
    reported: set[str] = set()
    for key in graph:
        if key in reported:
            continue
        cycle = find_cycle(key, lambda k: graph.get(k, ()))
        if cycle is not None:
            reported.update(cycle)
            warnings.append("prerequisite cycle: " + " -> ".join(cycle) + "; never holds")
    for key, parents in graph.items():
        deep = [p for p in parents if graph.get(p) and p not in reported]
        if deep and key not in reported:
            warnings.append(
                f"flag {key!r}: parent(s) {deep} have prerequisites of their own; Unleash "
                "evaluates one level only, so these never hold"
            )
    return Conversion(flags=flags, segments=segments, warnings=warnings)
