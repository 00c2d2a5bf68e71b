"""Where UnleashClient's engine (yggdrasil) answers differently from a reading of the operator
names; each found by the differential test (tests/differential) and pinned here."""

from __future__ import annotations

from typing import Any

import pytest
from aurora_client.targeting import Context, Flag, evaluate
from aurora_client.targeting import operators as operators_module
from aurora_client.targeting.operators import compile_constraint
from aurora_client.targeting.rules import rollout_bucket

from service.targeting.unleash import convert


def constraint(operator: str, **fields: Any) -> dict[str, Any]:
    return {"context_name": "v", "operator": operator, **fields}


def holds(data: dict[str, Any], value: str | None) -> bool:
    props = {} if value is None else {"v": value}
    return compile_constraint(data).check(Context.of({"properties": props}).fields)


@pytest.mark.parametrize(
    ("operator", "value", "context", "expected"),
    [
        ("SEMVER_EQ", "1.2", "1.2", True),  # a number: compared as numbers
        ("SEMVER_EQ", "1.0", "1", True),
        ("SEMVER_LT", "1.0", "0.5", True),
        ("SEMVER_EQ", "1.0", "1.0.0", False),  # "1.0.0" is not a number
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


# --- documents imported and evaluated (found by the differential test, checked against
# UnleashClient 6.9.1) -----------------------------------------------------------------------


def imported(*features: dict[str, Any]) -> dict[str, Flag]:
    document = {"version": 1, "features": [{"enabled": True, **f} for f in features]}
    return {f["flag_key"]: Flag.of(f) for f in convert(document).flags}


def answer(flags: dict[str, Flag], name: str, context: dict[str, Any]) -> tuple[bool, str]:
    result = evaluate(flags[name], Context.of(context), flags, {})
    return result.enabled, result.variant.name


def test_strategy_variants_hash_on_the_strategys_stickiness_not_the_rollouts() -> None:
    # Seed 105: gradualRolloutSessionId hashes its rollout on sessionId, but Unleash picks its
    # variants with the strategy's `stickiness` parameter, absent here: `default`, so userId.
    variants = [
        {"name": "green", "weight": 335, "weightType": "variable", "stickiness": "sessionId"},
        {"name": "b", "weight": 336, "weightType": "variable", "stickiness": "sessionId"},
    ]
    flags = imported(
        {
            "name": "beta_search-1",
            "strategies": [
                {
                    "name": "gradualRolloutSessionId",
                    "parameters": {"percentage": "25", "groupId": "grp"},
                    "variants": variants,
                }
            ],
        }
    )
    assert [v["stickiness"] for v in flags["beta_search-1"].rules[0].to_dict()["variants"]] == [
        "default",
        "default",
    ]
    assert answer(flags, "beta_search-1", {"userId": "2", "sessionId": "séance"}) == (True, "b")


def test_strategy_variants_hash_on_the_strategys_group_id_whatever_the_strategy() -> None:
    variants = [
        {"name": "a", "weight": 500, "weightType": "variable"},
        {"name": "b", "weight": 500, "weightType": "variable"},
    ]
    flags = imported(
        {
            "name": "f",
            "strategies": [
                {"name": "default", "parameters": {"groupId": "g"}, "variants": variants}
            ],
        }
    )
    assert flags["f"].rules[0].variants is not None
    assert flags["f"].rules[0].variants.group_id == "g"


def parent_and_children() -> dict[str, Flag]:
    """A parent with a flexibleRollout without groupId, and two children depending on it."""
    return imported(
        {
            "name": "beta_search-1",
            "strategies": [
                {
                    "name": "flexibleRollout",
                    "parameters": {"rollout": "25"},
                    "variants": [
                        {"name": "p1", "weight": 500, "weightType": "variable"},
                        {"name": "p2", "weight": 500, "weightType": "variable"},
                    ],
                }
            ],
        },
        {"name": "new.ui-0", "strategies": [], "dependencies": [{"feature": "beta_search-1"}]},
    )


def test_a_parent_rule_without_group_id_hashes_with_the_childs_key() -> None:
    # Seed 1201: the parent is on for sessionId 7 (its own key's bucket is within 25), but in
    # the child's prerequisite check Unleash hashes with the child's key: out, so off.
    flags = parent_and_children()
    assert rollout_bucket("beta_search-1", "7") <= 25 < rollout_bucket("new.ui-0", "7")
    assert answer(flags, "beta_search-1", {"sessionId": "7"})[0] is True
    assert answer(flags, "new.ui-0", {"sessionId": "7"}) == (False, "disabled")
    for session in map(str, range(200)):
        in_as_child = rollout_bucket("new.ui-0", session) <= 25
        assert answer(flags, "new.ui-0", {"sessionId": session})[0] is in_as_child


def test_the_parents_variant_still_hashes_with_its_own_key() -> None:
    flags = parent_and_children()
    child = flags["new.ui-0"].prerequisites[0]
    flags["new.ui-0"] = Flag.of(
        {
            "flag_key": "new.ui-0",
            "is_enabled": True,
            "prerequisites": [{**child.to_dict(), "variants": ["p1"]}],
        }
    )
    parent = flags["beta_search-1"]
    assert parent.rules[0].variants is not None
    seen = set()
    for session in map(str, range(200)):
        if rollout_bucket("new.ui-0", session) > 25:
            continue
        chosen, _ = parent.rules[0].variants.choose({"sessionId": session})
        assert chosen is not None
        seen.add(chosen.name)
        expected = chosen.name == "p1"
        assert answer(flags, "new.ui-0", {"sessionId": session})[0] is expected
    assert seen == {"p1", "p2"}


@pytest.mark.parametrize(
    ("percentage", "stored", "always"),
    [("0", 0, False), ("1", 0, False), ("100", 100, True), ("150", 100, True)],
)
def test_gradual_rollout_random_draws_below_the_percentage(
    percentage: str, stored: int, always: bool
) -> None:
    # Unleash draws 1..99 and holds below the percentage: never at 1 %, always from 100 up.
    flags = imported(
        {
            "name": "f",
            "strategies": [
                {"name": "gradualRolloutRandom", "parameters": {"percentage": percentage}}
            ],
        }
    )
    assert flags["f"].rules[0].percentage == stored
    assert all(answer(flags, "f", {"userId": str(u)})[0] is always for u in range(300))


@pytest.mark.parametrize(
    ("operator", "values", "expected"),
    [
        ("STR_STARTS_WITH", ["20"], True),
        ("STR_ENDS_WITH", ["+00:00"], True),
        ("STR_CONTAINS", ["T"], True),
        ("IN", ["2020-01-01T00:00:00Z"], False),
        ("NOT_IN", ["2020-01-01T00:00:00Z"], True),
    ],
)
def test_a_missing_current_time_is_the_time_of_the_call_for_every_operator(
    operator: str, values: list[str], expected: bool
) -> None:
    data = {"context_name": "currentTime", "operator": operator, "values": values}
    check = compile_constraint(data).check
    assert check(Context().fields) is expected
    # a currentTime the caller gives is used as it is
    assert check(Context.of({"currentTime": "x"}).fields) is (operator == "NOT_IN")
    inverted = compile_constraint({**data, "inverted": True}).check
    assert inverted(Context().fields) is (not expected)


def test_the_time_of_the_call_is_written_as_unleashs_python_sdk_writes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    regex = compile_constraint(
        {
            "context_name": "currentTime",
            "operator": "REGEX",
            "value": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?\+00:00$",
        }
    )
    assert regex.check(Context().fields) is True
    monkeypatch.setattr(operators_module, "now_text", lambda: "2031-01-01T00:00:00+00:00")
    after = compile_constraint(
        {"context_name": "currentTime", "operator": "DATE_AFTER", "value": "2030-12-31T23:59:59Z"}
    )
    assert after.check(Context().fields) is True
    starts = compile_constraint(
        {"context_name": "currentTime", "operator": "STR_STARTS_WITH", "values": ["2031-"]}
    )
    assert starts.check(Context().fields) is True
    assert starts.check(Context.of({"currentTime": "2030-01-01T00:00:00Z"}).fields) is False


def test_a_variant_override_on_a_missing_current_time_reads_the_time_of_the_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Found at 1,000,000 cases: Unleash's SDK fills currentTime before overrides are read too.
    now = "2024-06-15T12:30:00.500000+00:00"
    monkeypatch.setattr(operators_module, "now_text", lambda: now)
    flags = imported(
        {
            "name": "f",
            "strategies": [],
            "variants": [
                {
                    "name": "forced",
                    "weight": 0,
                    "weightType": "fix",
                    "overrides": [{"contextName": "currentTime", "values": [now]}],
                },
                {"name": "hashed", "weight": 1000, "weightType": "variable"},
            ],
        }
    )
    assert answer(flags, "f", {"userId": "1"}) == (True, "forced")
    assert answer(flags, "f", {"userId": "1", "currentTime": "2020-01-01T00:00:00Z"}) == (
        True,
        "hashed",
    )
