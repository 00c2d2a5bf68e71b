"""Validation of a native write of rules, variants, prerequisites or a segment, and its defaults.

Strict where evaluation is lenient: evaluation keeps Unleash's answer for anything an import
brings (a constraint that never matches, a missing parent), while a native write refuses what can
never work, each problem with a JSON Pointer into the written document and, for an exceeded
limit, the setting that raises it. `normalize_rules`/`normalize_variants` then fill the defaults.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aurora_client.targeting.operators import (
    DATE_OPERATORS,
    LIST_OPERATORS,
    NUM_OPERATORS,
    OPERATORS,
    SEMVER_OPERATORS,
    compile_regex,
    parse_date_value,
    parse_network,
    parse_number_value,
    parse_semver,
)
from aurora_client.targeting.prerequisites import find_cycle
from aurora_client.targeting.variants import PAYLOAD_TYPES, TOTAL_WEIGHT, normalize_variants

RULE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_NAME = 255  # context names, variant names, stickiness, group ids


@dataclass(frozen=True)
class Limits:
    rules_per_flag: int = 100
    constraints_per_rule: int = 50
    values_per_constraint: int = 1000


@dataclass(frozen=True)
class Problem:
    pointer: str  # JSON Pointer into the written document, e.g. "/rules/0/constraints/2/value"
    message: str
    limit: str | None = None  # the setting, when a limit was exceeded

    def to_dict(self) -> dict[str, Any]:
        return {"pointer": self.pointer, "message": self.message, "limit": self.limit}


_LIMIT_SETTINGS = {
    "rules_per_flag": "AURORA_MAX_RULES_PER_FLAG",
    "constraints_per_rule": "AURORA_MAX_CONSTRAINTS_PER_RULE",
    "values_per_constraint": "AURORA_MAX_VALUES_PER_CONSTRAINT",
}
_RULE_KEYS = frozenset({"id", "constraints", "segments", "rollout", "variants"})
_ROLLOUT_KEYS = frozenset({"percentage", "stickiness", "group_id"})
_CONSTRAINT_KEYS = frozenset(
    {"context_name", "operator", "values", "value", "inverted", "case_insensitive"}
)
_VARIANT_KEYS = frozenset({"name", "weight", "weight_type", "stickiness", "payload", "overrides"})
_PREREQUISITE_KEYS = frozenset({"flag_key", "enabled", "variants"})


def _escape(token: str | int) -> str:
    return str(token).replace("~", "~0").replace("/", "~1")


class _Report:
    """Collects problems under a pointer prefix."""

    def __init__(self, problems: list[Problem], base: str = "") -> None:
        self.problems = problems
        self.base = base

    def at(self, *tokens: str | int) -> _Report:
        return _Report(self.problems, self.base + "".join("/" + _escape(t) for t in tokens))

    def add(self, message: str, *tokens: str | int, limit: str | None = None) -> None:
        self.problems.append(Problem(self.at(*tokens).base or "", message, limit))

    def over(self, what: str, count: int, limits: Limits, setting: str, *tokens: str) -> bool:
        allowed: int = getattr(limits, setting)
        if count > allowed:
            self.add(
                f"{count} {what}, more than the limit of {allowed}",
                *tokens,
                limit=_LIMIT_SETTINGS[setting],
            )
            return True
        return False


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME and value.isprintable()


def _unknown_keys(report: _Report, data: Mapping[str, Any], allowed: frozenset[str]) -> None:
    for key in sorted(set(data) - allowed):
        report.add(f"unknown field {key!r}", key)


def _objects(report: _Report, value: Any, what: str) -> list[tuple[int, Mapping[str, Any]]]:
    """The objects of a list (None means an empty list); a problem for anything else."""
    if value is None:
        return []
    if not isinstance(value, list):
        report.add(f"{what} must be a list")
        return []
    out = []
    for index, item in enumerate(value):
        if isinstance(item, Mapping):
            out.append((index, item))
        else:
            report.add("must be an object", index)
    return out


def validate_constraint(report: _Report, data: Mapping[str, Any], limits: Limits) -> None:
    _unknown_keys(report, data, _CONSTRAINT_KEYS)
    if not _is_name(data.get("context_name")):
        report.add("context_name must be a non-empty string", "context_name")
    for flag in ("inverted", "case_insensitive"):
        if data.get(flag) is not None and not isinstance(data.get(flag), bool):
            report.add(f"{flag} must be true or false", flag)
    operator = data.get("operator")
    if operator not in OPERATORS:
        report.add(
            f"unknown operator {operator!r}; one of {', '.join(sorted(OPERATORS))}", "operator"
        )
        return
    values, value = data.get("values"), data.get("value")
    if operator in LIST_OPERATORS:
        _validate_values(report, operator, data, limits)
        return
    if values not in (None, []):
        report.add(f"{operator} takes `value`, not `values`", "values")
    if not isinstance(value, str):
        report.add(f"{operator} needs a string `value`", "value")
        return
    why = _value_problem(operator, value, data.get("case_insensitive") is True)
    if why is not None:
        report.add(why, "value")


def _validate_values(
    report: _Report, operator: str, data: Mapping[str, Any], limits: Limits
) -> None:
    values = data.get("values")
    if data.get("value") is not None:
        report.add(f"{operator} takes `values`, not `value`", "value")
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        report.add("values must be a list of strings", "values")
        return
    if report.over("values", len(values), limits, "values_per_constraint", "values"):
        return
    if not values and operator not in ("IN", "NOT_IN"):
        report.add(f"{operator} needs at least one value", "values")
    if operator == "IN_CIDR":
        for index, item in enumerate(values):
            if parse_network(item) is None:
                report.add(f"{item!r} is not an IP address or CIDR block", "values", index)


def _value_problem(operator: str, value: str, folded: bool) -> str | None:
    if operator in NUM_OPERATORS:
        if parse_number_value(value) is None:
            return f"{value!r} is not a number"
    elif operator in DATE_OPERATORS:
        if parse_date_value(value) is None:
            return f"{value!r} is not a date (RFC 3339 with an offset, e.g. 2026-01-31T12:00:00Z)"
    elif operator in SEMVER_OPERATORS:
        if parse_semver(value) is None:
            return f"{value!r} is not a semantic version (e.g. 1.2.3 or 2.0.0-beta.1, no 'v')"
    elif compile_regex(value, folded) is None:
        return f"RE2 refuses the regex {value!r} (no lookaround or backreferences)"
    return None


def validate_variants(report: _Report, variants: Any) -> None:
    items = _objects(report, variants, "variants")
    names: set[str] = set()
    fixed = 0
    variable = 0
    for index, data in items:
        at = report.at(index)
        name = data.get("name")
        if isinstance(name, str) and name in names:
            at.add(f"duplicate variant name {name!r}", "name")
        elif isinstance(name, str):
            names.add(name)
        _validate_variant(at, data)
        weight = data.get("weight")
        if data.get("weight_type", "variable") != "fix":
            variable += 1
        elif isinstance(weight, int) and not isinstance(weight, bool):
            fixed += weight
    if not items:
        return
    if fixed > TOTAL_WEIGHT:
        report.add(f"the 'fix' weights add up to {fixed}, more than {TOTAL_WEIGHT}")
    elif variable == 0 and fixed != TOTAL_WEIGHT:
        report.add(f"with only 'fix' variants the weights must add up to {TOTAL_WEIGHT}")
    elif variable and fixed == TOTAL_WEIGHT:
        report.add("the 'fix' weights leave nothing for the 'variable' variants")


def _validate_variant(at: _Report, data: Mapping[str, Any]) -> None:
    _unknown_keys(at, data, _VARIANT_KEYS)
    if not _is_name(data.get("name")):
        at.add("name must be a non-empty string", "name")
    weight_type = data.get("weight_type", "variable")
    if weight_type not in ("variable", "fix"):
        at.add("weight_type must be 'variable' or 'fix'", "weight_type")
    weight = data.get("weight")
    if weight is not None and (not _is_int(weight) or not 0 <= weight <= TOTAL_WEIGHT):
        at.add(f"weight must be an integer 0..{TOTAL_WEIGHT}", "weight")
    elif weight_type == "fix" and weight is None:
        at.add("a 'fix' variant needs a weight", "weight")
    stickiness = data.get("stickiness")
    if stickiness is not None and not _is_name(stickiness):
        at.add("stickiness must be a non-empty string", "stickiness")
    _validate_payload(at, data.get("payload"))
    for o_index, override in _objects(at.at("overrides"), data.get("overrides"), "overrides"):
        o_at = at.at("overrides", o_index)
        _unknown_keys(o_at, override, frozenset({"context_name", "values"}))
        if not _is_name(override.get("context_name")):
            o_at.add("context_name must be a non-empty string", "context_name")
        values = override.get("values")
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            o_at.add("values must be a list of strings", "values")


def _validate_payload(report: _Report, payload: Any) -> None:
    if payload is None:
        return
    if not isinstance(payload, Mapping):
        report.add("payload must be an object {type, value} or null", "payload")
        return
    _unknown_keys(report.at("payload"), payload, frozenset({"type", "value"}))
    kind, value = payload.get("type"), payload.get("value")
    if kind not in PAYLOAD_TYPES:
        report.add(
            f"payload type must be one of {', '.join(sorted(PAYLOAD_TYPES))}", "payload", "type"
        )
    if not isinstance(value, str):
        report.add("payload value must be a string", "payload", "value")
    elif kind == "number" and parse_number_value(value) is None:
        report.add(f"{value!r} is not a number", "payload", "value")
    elif kind == "json":
        try:
            json.loads(value)
        except ValueError:
            report.add("payload value is not JSON", "payload", "value")


def _validate_rule(
    report: _Report,
    data: Mapping[str, Any],
    segments: Collection[str],
    limits: Limits,
) -> None:
    _unknown_keys(report, data, _RULE_KEYS)
    rule_id = data.get("id")
    if rule_id is not None and (not isinstance(rule_id, str) or not RULE_ID.fullmatch(rule_id)):
        report.add("id must be 1..64 characters of A-Z a-z 0-9 . _ -", "id")
    constraints = data.get("constraints")
    if isinstance(constraints, list) and report.over(
        "constraints", len(constraints), limits, "constraints_per_rule", "constraints"
    ):
        constraints = None
    for index, constraint in _objects(report.at("constraints"), constraints, "constraints"):
        validate_constraint(report.at("constraints", index), constraint, limits)
    names = data.get("segments")
    if names is not None and not isinstance(names, list):
        report.add("segments must be a list of segment names", "segments")
    for index, name in enumerate(names if isinstance(names, list) else []):
        if not isinstance(name, str):
            report.add("a segment name must be a string", "segments", index)
        elif name not in segments:
            report.add(f"unknown segment {name!r}", "segments", index)
    _validate_rollout(report, data.get("rollout"))
    validate_variants(report.at("variants"), data.get("variants"))


def _validate_rollout(report: _Report, rollout: Any) -> None:
    if rollout is None:
        return
    if not isinstance(rollout, Mapping):
        report.add("rollout must be an object", "rollout")
        return
    _unknown_keys(report.at("rollout"), rollout, _ROLLOUT_KEYS)
    percentage = rollout.get("percentage", 100)
    if not _is_int(percentage) or not 0 <= percentage <= 100:
        report.add("percentage must be an integer 0..100", "rollout", "percentage")
    stickiness = rollout.get("stickiness")
    if stickiness is not None and not _is_name(stickiness):
        report.add("stickiness must be a non-empty string", "rollout", "stickiness")
    group_id = rollout.get("group_id")
    if group_id is not None and not _is_name(group_id):
        report.add("group_id must be a non-empty string or null", "rollout", "group_id")


def validate_targeting(
    rules: Any,
    variants: Any,
    prerequisites: Any,
    *,
    flag_key: str,
    segments: Collection[str],
    flags: Mapping[str, Sequence[str]],
    limits: Limits,
) -> list[Problem]:
    """Every problem of a native write of a flag's targeting; [] when it is valid.

    `segments`: the segment names of the environment; `flags`: every flag key of the environment
    mapped to its prerequisites' keys (the written flag's own entry is replaced)."""
    problems: list[Problem] = []
    report = _Report(problems)
    if isinstance(rules, list) and report.over(
        "rules", len(rules), limits, "rules_per_flag", "rules"
    ):
        rules = None
    ids: set[str] = set()
    for index, rule in _objects(report.at("rules"), rules, "rules"):
        _validate_rule(report.at("rules", index), rule, segments, limits)
        rule_id = rule.get("id")
        if isinstance(rule_id, str):
            if rule_id in ids:
                report.add(f"duplicate rule id {rule_id!r}", "rules", index, "id")
            ids.add(rule_id)
    validate_variants(report.at("variants"), variants)
    _validate_prerequisites(report.at("prerequisites"), prerequisites, flag_key, flags)
    return problems


def _validate_prerequisites(
    report: _Report, prerequisites: Any, flag_key: str, flags: Mapping[str, Sequence[str]]
) -> None:
    items = _objects(report, prerequisites, "prerequisites")
    parents: list[str] = []
    for index, data in items:
        at = report.at(index)
        _unknown_keys(at, data, _PREREQUISITE_KEYS)
        key = data.get("flag_key")
        if not isinstance(key, str) or not key:
            at.add("flag_key must be a non-empty string", "flag_key")
            continue
        if data.get("enabled") is not None and not isinstance(data.get("enabled"), bool):
            at.add("enabled must be true or false", "enabled")
        listed = data.get("variants")
        if listed is not None and (
            not isinstance(listed, list) or not all(isinstance(v, str) for v in listed)
        ):
            at.add("variants must be a list of variant names", "variants")
        if key == flag_key:
            at.add("a flag cannot be its own prerequisite", "flag_key")
        elif key not in flags:
            at.add(f"parent flag {key!r} not found", "flag_key")
        elif key in parents:
            at.add(f"duplicate prerequisite {key!r}", "flag_key")
        elif flags[key]:
            at.add(
                f"parent flag {key!r} has prerequisites of its own; prerequisites are one "
                "level deep, as in Unleash",
                "flag_key",
            )
        parents.append(key)
    if not parents:
        return
    graph: dict[str, Sequence[str]] = {**flags, flag_key: parents}
    cycle = find_cycle(flag_key, lambda key: graph.get(key, ()))
    if cycle is not None:
        report.add("prerequisites form a cycle: " + " -> ".join(cycle))
    children = sorted(key for key, keys in flags.items() if flag_key in keys and key != flag_key)
    if children:
        report.add(
            f"this flag is a prerequisite of {', '.join(map(repr, children))}, so it cannot "
            "have prerequisites (one level deep, as in Unleash)"
        )


def validate_segment(constraints: Any, *, limits: Limits) -> list[Problem]:
    """Every problem of a native write of a segment's constraints; [] when they are valid."""
    problems: list[Problem] = []
    report = _Report(problems).at("constraints")
    for index, constraint in _objects(report, constraints, "constraints"):
        validate_constraint(report.at(index), constraint, limits)
    return problems


def _constraint_defaults(data: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(data)
    out.setdefault("inverted", False)
    out.setdefault("case_insensitive", False)
    if out.get("operator") in LIST_OPERATORS:
        out.setdefault("values", [])
        out["value"] = None
    else:
        out.setdefault("value", None)
        out["values"] = []
    return out


def normalize_constraints(constraints: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A segment's constraints with their defaults (inverted/case_insensitive false)."""
    return [_constraint_defaults(c) for c in constraints]


def normalize_rules(
    rules: list[dict[str, Any]], *, flag_key: str | None = None
) -> list[dict[str, Any]]:
    """Validated rules with their defaults: ids r1, r2, ... where absent (skipping ids in use),
    rollout 100 % on `default` stickiness, group id `flag_key` where absent (so a native rule
    never hashes with another flag's key: a null group id means the evaluated flag's key, the
    dependent flag's in a prerequisite check, as in Unleash; without `flag_key` it stays null),
    empty lists, inverted/case_insensitive false, rule variants on the rule's stickiness where
    they name none, and the `variable` variant weights spread."""
    taken = {r["id"] for r in rules if isinstance(r.get("id"), str)}
    counter = 0

    def next_id() -> str:
        nonlocal counter
        while True:
            counter += 1
            candidate = f"r{counter}"
            if candidate not in taken:
                taken.add(candidate)
                return candidate

    out = []
    for raw in rules:
        rule = dict(raw)
        if not isinstance(rule.get("id"), str):
            rule["id"] = next_id()
        rule["constraints"] = normalize_constraints(list(rule.get("constraints") or []))
        rule["segments"] = list(rule.get("segments") or [])
        rollout = dict(rule.get("rollout") or {})
        rollout.setdefault("percentage", 100)
        rollout["stickiness"] = rollout.get("stickiness") or "default"
        if rollout.get("group_id") is None:
            rollout["group_id"] = flag_key
        rule["rollout"] = rollout
        rule["variants"] = normalize_variants(
            list(rule.get("variants") or []), stickiness=rollout["stickiness"]
        )
        out.append(rule)
    return out


__all__ = [
    "Limits",
    "Problem",
    "normalize_constraints",
    "normalize_rules",
    "normalize_variants",
    "validate_segment",
    "validate_targeting",
]
