"""Every constraint operator and its edges: missing fields, invalid values, case, inversion,
date and semver parsing, CIDR, RE2, and what Unleash treats as broken or never matching."""

from __future__ import annotations

from typing import Any

import pytest
from aurora_client.targeting import Context
from aurora_client.targeting.operators import (
    compile_constraint,
    parse_date,
    parse_number,
    parse_semver,
)


def holds(operator: str, actual: Any, *, name: str = "field", **fields: Any) -> bool:
    """Whether a constraint holds for a context whose `name` field is `actual`."""
    constraint = compile_constraint({"context_name": name, "operator": operator, **fields})
    context = Context.of({"properties": {} if actual is None else {name: actual}})
    if name in ("userId", "remoteAddress", "currentTime"):
        context = Context.of({} if actual is None else {name: actual})
    return constraint.check(context.fields)


@pytest.mark.parametrize(
    ("operator", "values", "actual", "expected"),
    [
        ("IN", ["a", "b"], "a", True),
        ("IN", ["a", "b"], "c", False),
        ("IN", ["a"], "A", False),
        ("IN", [], "a", False),
        ("IN", ["a"], None, False),
        ("NOT_IN", ["a", "b"], "a", False),
        ("NOT_IN", ["a", "b"], "c", True),
        ("NOT_IN", [], "a", True),
        ("NOT_IN", ["a"], None, True),  # Unleash: a missing field is not in any list
        ("STR_STARTS_WITH", ["ab", "x"], "abc", True),
        ("STR_STARTS_WITH", ["ab"], "cab", False),
        ("STR_STARTS_WITH", ["AB"], "abc", False),
        ("STR_STARTS_WITH", ["a"], None, False),
        ("STR_ENDS_WITH", ["bc"], "abc", True),
        ("STR_ENDS_WITH", ["ab"], "abc", False),
        ("STR_CONTAINS", ["b"], "abc", True),
        ("STR_CONTAINS", ["d"], "abc", False),
        ("STR_CONTAINS", [""], "abc", True),
    ],
)
def test_list_operators(
    operator: str, values: list[str], actual: str | None, expected: bool
) -> None:
    assert holds(operator, actual, values=values) is expected
    # inversion flips every answer, a missing field's included
    assert holds(operator, actual, values=values, inverted=True) is (not expected)


@pytest.mark.parametrize(
    ("operator", "values", "actual"),
    [
        ("STR_STARTS_WITH", ["TEST"], "TEsT@example.com"),
        ("STR_ENDS_WITH", ["Example.COM"], "a@EXAMPLE.com"),
        ("STR_CONTAINS", ["ÄB"], "xäbx"),
        ("IN", ["HOST-1"], "host-1"),
        ("NOT_IN", ["HOST-1"], "host-2"),
    ],
)
def test_case_insensitive(operator: str, values: list[str], actual: str) -> None:
    assert holds(operator, actual, values=values, case_insensitive=True)


def test_case_sensitive_by_default() -> None:
    assert not holds("STR_ENDS_WITH", "test@some-EMAIL.com", values=["some-email.com"])


@pytest.mark.parametrize(
    ("operator", "value", "actual", "expected"),
    [
        ("NUM_EQ", "12", "12.0", True),
        ("NUM_EQ", "12.0", "12", True),
        ("NUM_EQ", "12", "13", False),
        ("NUM_GT", "12", "13", True),
        ("NUM_GT", "12", "12", False),
        ("NUM_GTE", "12", "12", True),
        ("NUM_LT", "12", "0", True),
        ("NUM_LT", "12", "12", False),
        ("NUM_LTE", "12", "12", True),
        ("NUM_GT", "1e3", "1001", True),
        ("NUM_GT", "-1", "-0.5", True),
        ("NUM_GT", "1", "1e1", True),
        ("NUM_GT", "1", "inf", True),
        ("NUM_GT", "1", "abc", False),
        ("NUM_GT", "1", " 2", False),  # blanks around a number: not a number, as in Unleash
        ("NUM_GT", "1", "1_000", False),
        ("NUM_LT", "1", "NaN", False),
        ("NUM_GT", "1", None, False),
    ],
)
def test_number_operators(operator: str, value: str, actual: str | None, expected: bool) -> None:
    assert holds(operator, actual, value=value) is expected
    assert holds(operator, actual, value=value, inverted=True) is (not expected)


@pytest.mark.parametrize(
    ("operator", "value", "actual", "expected"),
    [
        ("DATE_AFTER", "2022-01-29T13:00:00.000Z", "2022-01-30T13:00:00.000Z", True),
        ("DATE_AFTER", "2022-01-29T13:00:00.000Z", "2022-01-29T13:00:00.000Z", False),
        ("DATE_BEFORE", "2022-01-29T13:00:00.000Z", "2022-01-28T13:00:00Z", True),
        ("DATE_BEFORE", "2022-01-29T13:00:00.000Z", "2022-01-29T13:00:00.000Z", False),
        # offsets: 11:30Z is after 13:00+02:00 (11:00Z) and before 14:00+02:00 (12:00Z)
        ("DATE_AFTER", "2022-01-22T13:00:00.000+02:00", "2022-01-22T11:30:00.000Z", True),
        ("DATE_BEFORE", "2022-01-22T14:00:00.000+02:00", "2022-01-22T11:30:00.000Z", True),
        ("DATE_AFTER", "2022-01-01T00:00:00Z", "2022-01-01T00:00:00.000001Z", True),
        ("DATE_AFTER", "2022-01-01T00:00:00Z", "2022-01-02", False),  # no time: not a date
        ("DATE_AFTER", "2022-01-01T00:00:00Z", "2022-01-02T00:00:00", False),  # no offset
        ("DATE_AFTER", "2022-01-01T00:00:00Z", "yesterday", False),
    ],
)
def test_date_operators(operator: str, value: str, actual: str, expected: bool) -> None:
    assert holds(operator, actual, name="currentTime", value=value) is expected
    assert holds(operator, actual, name="currentTime", value=value, inverted=True) is (not expected)


def test_a_missing_current_time_is_now() -> None:
    assert holds("DATE_AFTER", None, name="currentTime", value="2000-01-01T00:00:00Z")
    assert not holds("DATE_BEFORE", None, name="currentTime", value="2000-01-01T00:00:00Z")
    # another field holding a date is simply missing
    assert not holds("DATE_AFTER", None, name="launch", value="2000-01-01T00:00:00Z")


@pytest.mark.parametrize(
    ("operator", "value", "actual", "expected"),
    [
        ("SEMVER_EQ", "1.2.2", "1.2.2", True),
        ("SEMVER_EQ", "1.2.2", "1.2.2+build.5", True),  # build metadata has no precedence
        ("SEMVER_GT", "1.2.2", "1.2.10", True),
        ("SEMVER_GT", "2.0.0-alpha.1", "2.0.0-beta.1", True),
        ("SEMVER_GT", "2.0.0-alpha.1", "2.0.0", True),
        ("SEMVER_LT", "2.0.0-alpha.3", "2.0.0-alpha.1", True),
        ("SEMVER_LT", "2.0.0-alpha.10", "2.0.0-alpha.9", True),  # numeric identifiers
        ("SEMVER_GT", "2.0.0-alpha", "2.0.0-alpha.1", True),  # more identifiers: later
        ("SEMVER_GT", "2.0.0-1", "2.0.0-alpha", True),  # numeric before alphanumeric
        ("SEMVER_GTE", "1.2.2", "1.2.2", True),
        ("SEMVER_LTE", "1.2.2", "1.2.3", False),
        ("SEMVER_EQ", "1.2.2", "v1.2.2", False),
        ("SEMVER_EQ", "1.2.2", "1.2", False),
        ("SEMVER_GT", "1.0.0", "01.0.1", False),
        ("SEMVER_GT", "1.0.0", "1.0.1-01", False),
        ("SEMVER_GT", "1.0.0", "not a semver", False),
    ],
)
def test_semver_operators(operator: str, value: str, actual: str, expected: bool) -> None:
    assert holds(operator, actual, value=value) is expected
    assert holds(operator, actual, value=value, inverted=True) is (not expected)


def test_a_semver_value_with_a_leading_v_never_matches_even_inverted() -> None:
    constraint = compile_constraint(
        {"context_name": "v", "operator": "SEMVER_EQ", "value": "v2.0.0", "inverted": True}
    )
    assert constraint.never is not None
    assert constraint.broken is None
    assert not constraint.check(Context.of({"properties": {"v": "1.0.0"}}).fields)


@pytest.mark.parametrize(
    ("pattern", "actual", "expected", "folded"),
    [
        ("^cat$", "cat", True, False),
        ("^cat$", "Cat", False, False),
        ("^abc$", "AbC", True, True),
        ("b", "abc", True, False),  # a search, not a full match
        ("^user\\d{3}$", "user123", True, False),
        ("^[[:alpha:]]+$", "Alpha1", False, False),
        ("\\bcat\\b", "a cat b", True, False),
        ("^(?i)abc$", "AbC", True, False),  # RE2 takes flags mid-pattern; Python's re does not
        ("(?m)^foo$", "x\nfoo\ny", True, False),
        ("^(?s)a.b$", "a\nb", True, False),
    ],
)
def test_regex_uses_re2(pattern: str, actual: str, expected: bool, folded: bool) -> None:
    assert holds("REGEX", actual, value=pattern, case_insensitive=folded) is expected
    assert holds("REGEX", actual, value=pattern, case_insensitive=folded, inverted=True) is (
        not expected
    )


@pytest.mark.parametrize("pattern", ["(regex", "^(?=a)b$", "^(a)\\1$"])
def test_a_regex_re2_refuses_never_matches_then_inversion_applies(pattern: str) -> None:
    constraint = compile_constraint(
        {"context_name": "userId", "operator": "REGEX", "value": pattern}
    )
    assert constraint.never == "RE2 refuses this regex"
    assert not holds("REGEX", "aa", name="userId", value=pattern)
    assert holds("REGEX", "aa", name="userId", value=pattern, inverted=True)


def test_regex_on_a_missing_field() -> None:
    assert not holds("REGEX", None, value=".*")
    assert holds("REGEX", None, value=".*", inverted=True)


@pytest.mark.parametrize(
    ("values", "actual", "expected"),
    [
        (["127.0.0.1"], "127.0.0.1", True),
        (["127.0.0.1"], "127.0.0.2", False),
        (["160.33.0.0/16"], "160.33.0.33", True),
        (["160.33.0.0/16"], "160.34.0.1", False),
        (["160.33.1.1/16"], "160.33.200.1", True),  # host bits set: the block still counts
        (["127.invalid", "192.168.1.0/24"], "192.168.1.42", True),  # invalid entries ignored
        (["127.invalid"], "127.0.0.1", False),
        (["2001:db8::/32"], "2001:db8:0:1::42", True),
        (["2001:db8::1"], "2001:db8::2", False),
        (["10.0.0.0/8"], "2001:db8::1", False),  # another IP version never matches
        (["10.0.0.0/255.0.0.0"], "10.1.1.1", False),  # netmask spelling: not a CIDR
        (["10.0.0.0/8"], "not an ip", False),
        (["10.0.0.0/8"], "010.1.2.3", False),
    ],
)
def test_in_cidr(values: list[str], actual: str, expected: bool) -> None:
    assert holds("IN_CIDR", actual, name="remoteAddress", values=values) is expected
    assert holds("IN_CIDR", actual, name="remoteAddress", values=values, inverted=True) is (
        not expected
    )


def test_in_cidr_on_a_missing_address() -> None:
    assert not holds("IN_CIDR", None, name="remoteAddress", values=["0.0.0.0/0"])


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"operator": "NOT_A_VALID_OPERATOR", "value": "1"}, "unknown operator"),
        ({"operator": "NUM_EQ", "value": "twelve"}, "is not a number"),
        ({"operator": "NUM_EQ", "value": ".5"}, "is not a number"),
        ({"operator": "NUM_EQ"}, "needs a value"),
        ({"operator": "DATE_AFTER", "value": "2022-01-01"}, "is not an RFC 3339 date"),
        ({"operator": "DATE_AFTER", "value": "2022-01-01T00:00:00.123456Z"}, "is not an RFC 3339"),
        ({"operator": "SEMVER_EQ", "value": "1.2.3-01"}, "is not a semantic version"),
        ({"operator": "STR_CONTAINS", "values": []}, "needs at least one value"),
        ({"operator": "STR_STARTS_WITH"}, "needs at least one value"),
        ({"operator": "IN_CIDR", "values": []}, "needs at least one value"),
    ],
)
def test_what_unleash_cannot_compile_is_broken(fields: dict[str, Any], why: str) -> None:
    constraint = compile_constraint({"context_name": "x", "inverted": True, **fields})
    assert constraint.broken is not None
    assert why in constraint.broken
    assert not constraint.check(Context.of({"properties": {"x": "1"}}).fields)


def test_parsers() -> None:
    assert parse_number("1.5") == 1.5
    assert parse_number("") is None
    assert parse_date("1970-01-01T00:00:01Z") == 1_000_000
    assert parse_date("1970-01-01T02:00:01+02:00") == 1_000_000
    assert parse_semver("1.2.3") == (1, 2, 3, 1, ())
    assert parse_semver("18446744073709551616.0.0") is None  # beyond u64
    assert parse_semver("1.2.3-") is None
    assert parse_semver("1.2.3-a..b") is None


def test_context_names_read_the_standard_field_not_a_property_of_that_name() -> None:
    context = Context.of({"properties": {"userId": "7"}})
    assert context.value("userId") is None
    constraint = compile_constraint({"context_name": "userId", "operator": "IN", "values": ["7"]})
    assert not constraint.check(context.fields)
