"""Where UnleashClient's engine (yggdrasil) answers differently from a reading of the operator
names; each found by the differential test (tests/differential) and pinned here."""

from __future__ import annotations

from typing import Any

import pytest
from aurora_client.targeting import Context
from aurora_client.targeting.operators import compile_constraint


def constraint(operator: str, **fields: Any) -> dict[str, Any]:
    return {"context_name": "v", "operator": operator, **fields}


def holds(data: dict[str, Any], value: str | None) -> bool:
    props = {} if value is None else {"v": value}
    return compile_constraint(data).check(Context.of({"properties": props}).fields)


@pytest.mark.parametrize(
    ("operator", "value", "context", "expected"),
    [
        ("SEMVER_EQ", "1.2", "1.2", True),  # a number: compared as numbers
        ("SEMVER_GTE", "1.2", "1.2.3", False),  # "1.2.3" is not a number
        ("NUM_GT", "1.2.3", "1.10.0", True),  # a semver: compared as versions
        ("NUM_LT", "2024-06-15T12:30:00.000Z", "2020-01-01T00:00:00Z", True),  # as dates
        ("DATE_AFTER", "18", "18.5", True),  # a number
        ("DATE_BEFORE", "1.2.3", "1.2.3-beta.1", True),  # a semver
    ],
)
def test_an_ordered_value_is_compared_by_its_shape(
    operator: str, value: str, context: str, expected: bool
) -> None:
    compiled = compile_constraint(constraint(operator, value=value))
    assert compiled.broken is None
    assert holds(constraint(operator, value=value), context) is expected


@pytest.mark.parametrize(
    "operator", ["STR_STARTS_WITH", "STR_ENDS_WITH", "STR_CONTAINS", "IN_CIDR"]
)
def test_an_empty_list_breaks_the_string_and_cidr_operators(operator: str) -> None:
    assert compile_constraint(constraint(operator, values=[])).broken is not None


@pytest.mark.parametrize(("operator", "missing"), [("IN", False), ("NOT_IN", True)])
def test_in_and_not_in_take_an_empty_list(operator: str, missing: bool) -> None:
    compiled = compile_constraint(constraint(operator, values=[]))
    assert compiled.broken is None
    assert holds(constraint(operator, values=[]), "x") is missing


def test_a_regex_without_a_value_is_the_empty_regex() -> None:
    compiled = compile_constraint(constraint("REGEX", values=["(a|b"]))
    assert compiled.broken is None
    assert holds(constraint("REGEX", values=["(a|b"]), "anything") is True
    assert holds(constraint("REGEX", inverted=True), "anything") is False


def test_a_top_level_key_wins_over_the_same_property() -> None:
    context = Context.of({"age": "-0", "properties": {"age": "18.5", "tier": "gold"}})
    assert context.properties == {"age": "-0", "tier": "gold"}
