"""Constraint operators: parsing a constraint once, and the compiled check that runs per call.

A constraint is compiled when its flag or segment is (Flag.of, Segment.of): numbers, dates,
semvers, regexes, CIDRs and value sets are parsed here, once, so the check does no parsing of the
constraint and builds no objects (it still has to read the context's string as a number, date,
version or address). The semantics are Unleash's, as its Rust engine (yggdrasil) and its client
specification define them:

- A missing context field makes every operator false except `NOT_IN` (true); `inverted` then
  flips the answer, so an inverted `IN` on a missing field is true. A missing `currentTime` is
  the time of the call instead, for every operator (Unleash's SDKs fill it in).
- A context value that does not parse (a number, date, semver or address) is false, then
  `inverted` applies.
- `case_insensitive` lower-cases both sides for the string operators, `IN`/`NOT_IN` (our
  extension, which the import of `applicationHostname` needs; an import clears the flag on
  Unleash's `IN`/`NOT_IN`, which ignore it) and `REGEX`.
- A constraint Unleash's engine cannot compile (an unknown operator; a number, date or semver
  value that does not parse; `STR_*` or `IN_CIDR` without values) is *broken*: it makes its
  whole flag off for everyone, as yggdrasil does. A native write refuses it; only an import can
  store one. Two milder cases never match
  instead: a regex RE2 refuses (false, then `inverted` applies) and a semver value with a leading
  `v` (false even when inverted). Invalid `IN_CIDR` entries are ignored.
"""

from __future__ import annotations

import ipaddress
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import re2  # type: ignore[import-untyped]

#: A context's fields by Unleash name (Context.fields).
Fields = Mapping[str, str]
#: A compiled constraint: the context's fields in, whether it holds out.
Check = Callable[[Fields], bool]

LIST_OPERATORS = frozenset(
    {"IN", "NOT_IN", "STR_STARTS_WITH", "STR_ENDS_WITH", "STR_CONTAINS", "IN_CIDR"}
)
NUM_OPERATORS = frozenset({"NUM_EQ", "NUM_GT", "NUM_GTE", "NUM_LT", "NUM_LTE"})
DATE_OPERATORS = frozenset({"DATE_AFTER", "DATE_BEFORE"})
SEMVER_OPERATORS = frozenset({"SEMVER_EQ", "SEMVER_GT", "SEMVER_GTE", "SEMVER_LT", "SEMVER_LTE"})
VALUE_OPERATORS = NUM_OPERATORS | DATE_OPERATORS | SEMVER_OPERATORS | {"REGEX"}
OPERATORS = LIST_OPERATORS | VALUE_OPERATORS

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

# Unleash's engine reads a constraint's number with this grammar (an integer part is required)
# and a context value as Rust's f64 does (which also takes ".5", "inf" and "nan", not blanks).
_NUMBER_VALUE = re.compile(r"[ \t]*[+-]?[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?[ \t]*")
# A constraint's date: RFC 3339 with an offset and at most milliseconds, as the engine's grammar.
_DATE_VALUE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{3})?(?:Z|[+-][0-9]{2}:[0-9]{2})"
)
# A context's date: RFC 3339 with an offset, any fraction (chrono's reading of a DateTime<Utc>).
_DATE_CONTEXT = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ]([0-9]{2}:[0-9]{2}:[0-9]{2})(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
# Semantic Versioning 2.0.0, strictly (semver.org's grammar, as Rust's semver crate reads it):
# no leading "v", no leading zeros in numbers, build metadata ignored for precedence.
_SEMVER = re.compile(
    r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)
# The engine grammar's semver value (then read strictly: "01.2.3" fits here but is refused).
_SEMVER_VALUE = re.compile(
    r"[0-9]+\.[0-9]+\.[0-9]+(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)
_U64 = 2**64

#: A version's precedence key: (major, minor, patch, release?, pre-release identifiers).
SemverKey = tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]


def parse_number(text: str) -> float | None:
    """A context value as a number, as Rust's `str::parse::<f64>` reads it; None if it is not."""
    try:
        number = float(text)
    except ValueError:
        return None
    # float() also accepts surrounding blanks and digit underscores; Rust does not.
    if "_" in text or text[0].isspace() or text[-1].isspace():
        return None
    return number


def parse_number_value(text: str) -> float | None:
    """A constraint's number value (Unleash's grammar: an integer part, optional fraction and
    exponent); None if Unleash could not compile it."""
    if _NUMBER_VALUE.fullmatch(text) is None:
        return None
    return float(text.strip(" \t"))


def _micros(dt: datetime) -> int:
    return (dt - _EPOCH) // _MICROSECOND


def parse_date(text: str) -> int | None:
    """A context value as a point in time (microseconds since the epoch), or None. RFC 3339 with
    an offset, as Unleash's engine reads a currentTime."""
    match = _DATE_CONTEXT.fullmatch(text)
    if match is None:
        return None
    day, clock, fraction, offset = match.groups()
    fraction = (fraction or "")[:7]  # datetime keeps microseconds; the rest is truncated
    offset = "+00:00" if offset in ("Z", "z") else offset
    try:
        return _micros(datetime.fromisoformat(f"{day}T{clock}{fraction}{offset}"))
    except ValueError:
        return None


def parse_date_value(text: str) -> int | None:
    """A constraint's date value, or None if Unleash could not compile it."""
    if _DATE_VALUE.fullmatch(text) is None:
        return None
    return parse_date(text)


def parse_semver(text: str) -> SemverKey | None:
    """A strict SemVer 2.0.0 version as its precedence key, or None."""
    match = _SEMVER.fullmatch(text)
    if match is None:
        return None
    major, minor, patch = int(match[1]), int(match[2]), int(match[3])
    if major >= _U64 or minor >= _U64 or patch >= _U64:
        return None
    if match[4] is None:
        return (major, minor, patch, 1, ())
    identifiers: list[tuple[int, int, str]] = []
    for part in match[4].split("."):
        if part.isdigit():
            if len(part) > 1 and part[0] == "0":
                return None  # semver.org: numeric identifiers have no leading zeros
            identifiers.append((0, int(part), ""))
        else:
            identifiers.append((1, 0, part))  # alphanumeric: after numeric, compared as ASCII
    return (major, minor, patch, 0, tuple(identifiers))


def compile_regex(pattern: str, case_insensitive: bool) -> Any | None:
    """The pattern compiled by RE2 (Unleash's engine and its specification use RE2's syntax:
    no lookaround, no backreferences, linear time), or None if RE2 refuses it."""
    options = re2.Options()
    options.log_errors = False
    options.never_capture = True
    options.case_sensitive = not case_insensitive
    try:
        return re2.compile(pattern, options)
    except re2.error:
        return None


#: An IP network as (version, first address, mask), compared without building objects.
Network = tuple[int, int, int]


def parse_network(text: str) -> Network | None:
    """An address or CIDR block ("10.0.0.0/8", "2001:db8::/32", "127.0.0.1"), or None. Host bits
    may be set, as Unleash allows; netmask spellings and zone ids are refused, as Unleash does."""
    if "%" in text or text.count("/") > 1:
        return None
    address, _, prefix = text.partition("/")
    if prefix and not (prefix.isascii() and prefix.isdigit()):
        return None
    try:
        network = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return None
    if address != address.strip():
        return None
    mask = int(network.netmask)
    return (network.version, int(network.network_address), mask)


def parse_address(text: str) -> tuple[int, int] | None:
    """A context's IP address as (version, integer), or None."""
    if "%" in text:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    return (address.version, int(address))


@dataclass(frozen=True, slots=True)
class Constraint:
    """A constraint compiled for evaluation.

    `check` answers for a context. `broken` says why Unleash's engine could not compile it (the
    flag is then off); `never` why it can never match on its own (RE2 refused the regex, ...).
    """

    context_name: str
    operator: str
    values: tuple[str, ...]
    value: str | None
    inverted: bool
    case_insensitive: bool
    check: Check
    broken: str | None = None
    never: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "context_name": self.context_name,
            "operator": self.operator,
            "values": list(self.values),
            "value": self.value,
            "inverted": self.inverted,
            "case_insensitive": self.case_insensitive,
        }


def _false(_: Fields) -> bool:
    return False


def _true(_: Fields) -> bool:
    return True


def _string_values(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list):
        return ()
    return tuple(v if isinstance(v, str) else str(v) for v in raw if v is not None)


def compile_constraint(data: Mapping[str, Any]) -> Constraint:
    """One constraint of the stored format, compiled. Never raises: what cannot be compiled is
    returned broken (its flag is off) or never-matching, as Unleash does."""
    name = str(data.get("context_name") or "")
    operator = str(data.get("operator") or "")
    values = _string_values(data.get("values"))
    raw_value = data.get("value")
    value = raw_value if isinstance(raw_value, str) or raw_value is None else str(raw_value)
    inverted = data.get("inverted") is True
    folded = data.get("case_insensitive") is True

    def build(check: Check, broken: str | None = None, never: str | None = None) -> Constraint:
        if name == "currentTime" and check is not _true and check is not _false:
            check = _at_call_time(check)
        return Constraint(name, operator, values, value, inverted, folded, check, broken, never)

    if operator in LIST_OPERATORS:
        if not values and operator not in ("IN", "NOT_IN"):
            # Unleash's engine cannot compile an empty list here (IN/NOT_IN take one).
            return build(_false, broken=f"{operator} needs at least one value")
        return build(_list_check(operator, name, values, inverted, folded))
    if operator not in VALUE_OPERATORS:
        return build(_false, broken=f"unknown operator {operator!r}")
    if value is None and operator == "REGEX":
        value = ""  # the engine reads a missing regex as the empty one, which matches anything
    if value is None:
        return build(_false, broken=f"{operator} needs a value")
    if operator == "REGEX":
        regex = compile_regex(value, folded)
        if regex is None:
            return build(_true if inverted else _false, never="RE2 refuses this regex")
        return build(_regex_check(name, regex, inverted))
    if operator in SEMVER_OPERATORS and value.startswith("v"):
        # Unleash's engine turns such a constraint into a plain false, before inversion.
        return build(_false, never="a semver with a leading 'v' never matches")
    check, broken = _ordered(operator, name, value, inverted)
    return build(check, broken=broken)


def _ordered(operator: str, name: str, value: str, inverted: bool) -> tuple[Check, str | None]:
    """An ordered comparison (NUM_*, DATE_*, SEMVER_*): its check, or why it is broken.

    Unleash's engine reads the value by its shape, whatever the operator's family (its rule
    grammar tries a date, then a semver, then a number); the operator only gives the direction:
    NUM_GT "1.2.3" compares versions, SEMVER_EQ "1.2" compares numbers, DATE_AFTER "18" numbers
    (found by the differential test, tests/differential).
    """
    direction = _DIRECTIONS[operator]
    shape = value.strip(" \t")
    if _DATE_VALUE.fullmatch(shape) is not None:
        moment = parse_date(shape)
        if moment is None:
            return _false, f"{value!r} is not a valid date"
        check = _ordered_check(f"DATE_{direction}", name, parse_date, moment, inverted=inverted)
        return check, None
    if _SEMVER_VALUE.fullmatch(shape) is not None:
        version = parse_semver(shape)
        if version is None:
            return _false, f"{value!r} is not a semantic version"
        check = _ordered_check(
            f"SEMVER_{direction}", name, parse_semver, version, inverted=inverted
        )
        return check, None
    number = parse_number_value(value)
    if number is None:
        return _false, f"{value!r} {_NOT_READ[operator[:3]]}"
    return _number_check(f"NUM_{direction}", name, number, inverted), None


def now_text() -> str:
    """The time of the call as Unleash's Python SDK writes a missing currentTime (ISO 8601 in
    UTC: `2026-01-31T12:00:00.123456+00:00`, no fraction on a whole second)."""
    return datetime.now(UTC).isoformat()


def _at_call_time(check: Check) -> Check:
    """A check on currentTime that reads the time of the call when the context has none, as
    Unleash's SDKs fill it in before any operator runs. Only constraints on currentTime pay for
    it, and only when it is missing."""

    def at_call_time(fields: Fields) -> bool:
        if "currentTime" in fields:
            return check(fields)
        return check({"currentTime": now_text()})  # a check reads only its own field

    return at_call_time


#: Why a value of no shape is refused, by the operator's family.
_NOT_READ = {
    "NUM": "is not a number",
    "DAT": "is not an RFC 3339 date with an offset",
    "SEM": "is not a semantic version",
}
#: Each ordered operator's direction; the value's shape picks what is compared.
_DIRECTIONS = {
    "NUM_EQ": "EQ",
    "NUM_GT": "GT",
    "NUM_GTE": "GTE",
    "NUM_LT": "LT",
    "NUM_LTE": "LTE",
    "DATE_AFTER": "GT",
    "DATE_BEFORE": "LT",
    "SEMVER_EQ": "EQ",
    "SEMVER_GT": "GT",
    "SEMVER_GTE": "GTE",
    "SEMVER_LT": "LT",
    "SEMVER_LTE": "LTE",
}
_EPSILON = 2.220446049250313e-16  # Rust's f64::EPSILON: Unleash's NUM_EQ tolerance
_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "NUM_EQ": lambda a, b: abs(a - b) < _EPSILON,
    "NUM_GT": lambda a, b: a > b,
    "NUM_GTE": lambda a, b: a >= b,
    "NUM_LT": lambda a, b: a < b,
    "NUM_LTE": lambda a, b: a <= b,
    "DATE_EQ": lambda a, b: a == b,
    "DATE_GT": lambda a, b: a > b,
    "DATE_GTE": lambda a, b: a >= b,
    "DATE_LT": lambda a, b: a < b,
    "DATE_LTE": lambda a, b: a <= b,
    "SEMVER_EQ": lambda a, b: a == b,
    "SEMVER_GT": lambda a, b: a > b,
    "SEMVER_GTE": lambda a, b: a >= b,
    "SEMVER_LT": lambda a, b: a < b,
    "SEMVER_LTE": lambda a, b: a <= b,
}

# The checks below are closures over what compile_constraint parsed; each reads the context's
# fields (Context.fields: every field by its Unleash name) and does nothing else. They are
# spelled out per operator, without shared helpers, because a call costs as much as a check.


def _number_check(operator: str, name: str, target: float, inverted: bool) -> Check:
    if operator == "NUM_GT":  # the common case, one call less

        def num_gt(fields: Fields) -> bool:
            text = fields.get(name)
            if text is None:
                return inverted
            try:
                number = float(text)
            except ValueError:
                return inverted
            if "_" in text or text[0].isspace() or text[-1].isspace():
                return inverted  # float() takes these, Rust's f64 parsing does not
            return (number > target) is not inverted

        return num_gt
    return _ordered_check(operator, name, parse_number, target, inverted=inverted)


def _ordered_check(
    operator: str,
    name: str,
    parse: Callable[[str], Any],
    target: Any,
    *,
    inverted: bool,
) -> Check:
    compare = _COMPARISONS[operator]

    def ordered(fields: Fields) -> bool:
        text = fields.get(name)
        if text is None:
            return inverted
        parsed = parse(text)
        if parsed is None:
            return inverted
        return compare(parsed, target) is not inverted

    return ordered


def _regex_check(name: str, regex: Any, inverted: bool) -> Check:
    search = regex.search

    def matches(fields: Fields) -> bool:
        text = fields.get(name)
        if text is None:
            return inverted
        return (search(text) is not None) is not inverted

    return matches


def _list_check(
    operator: str, name: str, values: Sequence[str], inverted: bool, folded: bool
) -> Check:
    if operator == "IN_CIDR":
        return _cidr_check(name, values, inverted)
    if operator in ("IN", "NOT_IN"):
        return _in_check(operator, name, values, inverted, folded)
    needles = tuple(v.lower() for v in values) if folded else tuple(values)
    if operator == "STR_STARTS_WITH":
        if folded:

            def starts_folded(fields: Fields) -> bool:
                text = fields.get(name)
                if text is None:
                    return inverted
                return text.lower().startswith(needles) is not inverted

            return starts_folded

        def starts(fields: Fields) -> bool:
            text = fields.get(name)
            if text is None:
                return inverted
            return text.startswith(needles) is not inverted

        return starts
    if operator == "STR_ENDS_WITH":

        def ends(fields: Fields) -> bool:
            text = fields.get(name)
            if text is None:
                return inverted
            return (text.lower() if folded else text).endswith(needles) is not inverted

        return ends

    def contains(fields: Fields) -> bool:
        text = fields.get(name)
        if text is None:
            return inverted
        if folded:
            text = text.lower()
        return any(needle in text for needle in needles) is not inverted

    return contains


def _in_check(
    operator: str, name: str, values: Sequence[str], inverted: bool, folded: bool
) -> Check:
    members = frozenset(v.lower() for v in values) if folded else frozenset(values)
    missing = (operator == "NOT_IN") is not inverted  # the answer for a missing field
    listed = (operator == "IN") is not inverted  # ... for a listed value
    if folded:

        def in_folded(fields: Fields) -> bool:
            text = fields.get(name)
            if text is None:
                return missing
            return listed if text.lower() in members else not listed

        return in_folded

    def in_list(fields: Fields) -> bool:
        text = fields.get(name)
        if text is None:
            return missing
        return listed if text in members else not listed

    return in_list


def _cidr_check(name: str, values: Sequence[str], inverted: bool) -> Check:
    networks = tuple(n for n in (parse_network(v) for v in values) if n is not None)

    def in_cidr(fields: Fields) -> bool:
        text = fields.get(name)
        if text is None:
            return inverted
        address = parse_address(text)
        if address is None:
            return inverted
        version, number = address
        for net_version, first, mask in networks:
            if net_version == version and number & mask == first:
                return not inverted
        return inverted

    return in_cidr


def random_bucket() -> int:
    """A bucket 1..100 drawn at random, for the `random` stickiness (not cryptographic)."""
    return random.randint(1, 100)  # noqa: S311 - a rollout draw, not a secret
