"""Native writes: every problem with its JSON Pointer, limits named, defaults filled."""

from __future__ import annotations

from typing import Any

import pytest
from aurora_client.targeting import (
    Limits,
    Problem,
    normalize_rules,
    normalize_variants,
    validate_segment,
    validate_targeting,
)

LIMITS = Limits()


def check(
    rules: Any = None,
    variants: Any = None,
    prerequisites: Any = None,
    *,
    flags: dict[str, list[str]] | None = None,
    limits: Limits = LIMITS,
) -> list[Problem]:
    return validate_targeting(
        rules,
        variants,
        prerequisites,
        flag_key="checkout",
        segments={"beta"},
        flags={"checkout": [], "parent": [], **(flags or {})},
        limits=limits,
    )


def pointers(problems: list[Problem]) -> list[str]:
    return [p.pointer for p in problems]


def constraint(operator: str, **fields: Any) -> dict[str, Any]:
    return {"context_name": "version", "operator": operator, **fields}


def rule_with(*constraints: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"id": "a", "constraints": list(constraints)}]


def test_a_complete_valid_write_has_no_problems() -> None:
    rules = [
        {
            "id": "beta-de",
            "constraints": [
                constraint("IN", values=["1"]),
                constraint("STR_STARTS_WITH", values=["a"], case_insensitive=True),
                constraint("NUM_GT", value="1.5"),
                constraint("DATE_AFTER", value="2026-01-31T12:00:00Z"),
                constraint("SEMVER_GTE", value="2.3.0-beta.1"),
                constraint("REGEX", value="^user\\d+$", inverted=True),
                constraint("IN_CIDR", values=["10.0.0.0/8", "127.0.0.1"]),
            ],
            "segments": ["beta"],
            "rollout": {"percentage": 50, "stickiness": "sessionId", "group_id": None},
            "variants": [{"name": "a", "weight": 500}, {"name": "b", "weight": 500}],
        },
        {"constraints": []},
    ]
    variants = [
        {
            "name": "blue",
            "weight_type": "fix",
            "weight": 300,
            "payload": {"type": "json", "value": "{}"},
        },
        {"name": "red", "overrides": [{"context_name": "userId", "values": ["7"]}]},
    ]
    assert check(rules, variants, [{"flag_key": "parent", "variants": ["x"]}]) == []


@pytest.mark.parametrize(
    ("bad", "pointer"),
    [
        (constraint("NOT_AN_OPERATOR", value="1"), "/rules/0/constraints/0/operator"),
        (constraint("NUM_EQ", value="twelve"), "/rules/0/constraints/0/value"),
        (constraint("NUM_EQ", value=".5"), "/rules/0/constraints/0/value"),
        (constraint("DATE_AFTER", value="2026-01-31"), "/rules/0/constraints/0/value"),
        (constraint("SEMVER_EQ", value="v1.2.3"), "/rules/0/constraints/0/value"),
        (constraint("SEMVER_EQ", value="1.2"), "/rules/0/constraints/0/value"),
        (constraint("SEMVER_EQ", value="1.2.3-01"), "/rules/0/constraints/0/value"),
        (constraint("REGEX", value="^(?=a)b$"), "/rules/0/constraints/0/value"),
        (constraint("REGEX", value="(a"), "/rules/0/constraints/0/value"),
        (constraint("IN_CIDR", values=["10.0.0.0/8", "10.bad"]), "/rules/0/constraints/0/values/1"),
        (constraint("IN", values="1"), "/rules/0/constraints/0/values"),
        (constraint("STR_CONTAINS", values=[]), "/rules/0/constraints/0/values"),
        (constraint("IN_CIDR", values=[]), "/rules/0/constraints/0/values"),
        (constraint("IN", values=[1]), "/rules/0/constraints/0/values"),
        (constraint("IN", values=["1"], value="1"), "/rules/0/constraints/0/value"),
        (constraint("NUM_EQ", values=["1"], value="1"), "/rules/0/constraints/0/values"),
        (constraint("NUM_EQ"), "/rules/0/constraints/0/value"),
        (constraint("IN", values=[], inverted="yes"), "/rules/0/constraints/0/inverted"),
        ({"operator": "IN", "values": []}, "/rules/0/constraints/0/context_name"),
        ({**constraint("IN", values=[]), "extra": 1}, "/rules/0/constraints/0/extra"),
    ],
)
def test_each_bad_constraint_is_named_by_its_pointer(bad: dict[str, Any], pointer: str) -> None:
    problems = check(rule_with(bad))
    assert pointers(problems) == [pointer]
    assert problems[0].limit is None


@pytest.mark.parametrize(
    ("rule", "pointer"),
    [
        ({"id": "has space"}, "/rules/0/id"),
        ({"segments": ["nope"]}, "/rules/0/segments/0"),
        ({"segments": "beta"}, "/rules/0/segments"),
        ({"rollout": {"percentage": 101}}, "/rules/0/rollout/percentage"),
        ({"rollout": {"percentage": True}}, "/rules/0/rollout/percentage"),
        ({"rollout": {"stickiness": ""}}, "/rules/0/rollout/stickiness"),
        ({"rollout": {"group_id": 5}}, "/rules/0/rollout/group_id"),
        ({"rollout": 5}, "/rules/0/rollout"),
        ({"constraints": {}}, "/rules/0/constraints"),
        ({"when": 1}, "/rules/0/when"),
        ({"variants": [{"name": "a", "weight": 2000}]}, "/rules/0/variants/0/weight"),
    ],
)
def test_each_bad_rule_is_named_by_its_pointer(rule: dict[str, Any], pointer: str) -> None:
    assert pointer in pointers(check([rule]))


def test_rules_must_be_a_list_of_objects() -> None:
    assert pointers(check({"id": "a"})) == ["/rules"]
    assert pointers(check([1])) == ["/rules/0"]


def test_duplicate_rule_ids() -> None:
    assert pointers(check([{"id": "a"}, {"id": "a"}])) == ["/rules/1/id"]


def test_limits_are_named() -> None:
    limits = Limits(rules_per_flag=2, constraints_per_rule=1, values_per_constraint=3)
    too_many_rules = check([{}, {}, {}], limits=limits)
    assert [(p.pointer, p.limit) for p in too_many_rules] == [
        ("/rules", "AURORA_MAX_RULES_PER_FLAG")
    ]
    two = [constraint("IN", values=[]), constraint("IN", values=[])]
    assert [(p.pointer, p.limit) for p in check(rule_with(*two), limits=limits)] == [
        ("/rules/0/constraints", "AURORA_MAX_CONSTRAINTS_PER_RULE")
    ]
    many = constraint("IN", values=["1", "2", "3", "4"])
    assert [(p.pointer, p.limit) for p in check(rule_with(many), limits=limits)] == [
        ("/rules/0/constraints/0/values", "AURORA_MAX_VALUES_PER_CONSTRAINT")
    ]
    assert "4 values, more than the limit of 3" in check(rule_with(many), limits=limits)[0].message


@pytest.mark.parametrize(
    ("variants", "pointer"),
    [
        ([{"weight": 1}], "/variants/0/name"),
        ([{"name": "a"}, {"name": "a"}], "/variants/1/name"),
        ([{"name": "a", "weight_type": "fixed"}], "/variants/0/weight_type"),
        ([{"name": "a", "weight_type": "fix"}], "/variants/0/weight"),
        ([{"name": "a", "weight": -1}], "/variants/0/weight"),
        ([{"name": "a", "payload": {"type": "xml", "value": "<a/>"}}], "/variants/0/payload/type"),
        ([{"name": "a", "payload": {"type": "number", "value": "x"}}], "/variants/0/payload/value"),
        ([{"name": "a", "payload": {"type": "json", "value": "{"}}], "/variants/0/payload/value"),
        ([{"name": "a", "payload": {"type": "string", "value": 1}}], "/variants/0/payload/value"),
        ([{"name": "a", "payload": "x"}], "/variants/0/payload"),
        (
            [{"name": "a", "overrides": [{"context_name": "userId"}]}],
            "/variants/0/overrides/0/values",
        ),
        ([{"name": "a", "overrides": [{"values": []}]}], "/variants/0/overrides/0/context_name"),
        ([{"name": "a", "stickiness": 3}], "/variants/0/stickiness"),
    ],
)
def test_each_bad_variant_is_named_by_its_pointer(variants: Any, pointer: str) -> None:
    assert pointer in pointers(check(None, variants))


def test_fixed_weights_must_fit_in_1000() -> None:
    over = [
        {"name": "a", "weight_type": "fix", "weight": 700},
        {"name": "b", "weight_type": "fix", "weight": 400},
    ]
    assert [p.message for p in check(None, over)] == [
        "the 'fix' weights add up to 1100, more than 1000"
    ]
    short = [{"name": "a", "weight_type": "fix", "weight": 700}]
    assert pointers(check(None, short)) == ["/variants"]
    full = [{"name": "a", "weight_type": "fix", "weight": 1000}, {"name": "b"}]
    assert pointers(check(None, full)) == ["/variants"]


@pytest.mark.parametrize(
    ("prerequisites", "flags", "message"),
    [
        ([{"flag_key": "ghost"}], {}, "parent flag 'ghost' not found"),
        ([{"flag_key": "checkout"}], {}, "a flag cannot be its own prerequisite"),
        ([{"flag_key": "parent"}, {"flag_key": "parent"}], {}, "duplicate prerequisite 'parent'"),
        ([{"flag_key": "mid"}], {"mid": ["parent"]}, "parent flag 'mid' has prerequisites"),
        ([{"flag_key": "parent", "enabled": "no"}], {}, "enabled must be true or false"),
        ([{"flag_key": "parent", "variants": "a"}], {}, "variants must be a list"),
        ([{"enabled": True}], {}, "flag_key must be a non-empty string"),
    ],
)
def test_bad_prerequisites(prerequisites: Any, flags: dict[str, list[str]], message: str) -> None:
    problems = check(None, None, prerequisites, flags=flags)
    assert any(
        p.message.startswith(message) and p.pointer.startswith("/prerequisites/") for p in problems
    ), problems


def test_a_prerequisite_cycle_is_refused() -> None:
    # parent depends on checkout; checkout now wants parent: a cycle, and a parent of a parent
    problems = check(None, None, [{"flag_key": "parent"}], flags={"parent": ["checkout"]})
    messages = [p.message for p in problems]
    assert "prerequisites form a cycle: checkout -> parent -> checkout" in messages
    assert any(m.startswith("this flag is a prerequisite of 'parent'") for m in messages)


def test_a_parent_cannot_get_prerequisites() -> None:
    problems = check(None, None, [{"flag_key": "parent"}], flags={"child": ["checkout"]})
    assert [p.pointer for p in problems] == ["/prerequisites"]


def test_segment_constraints() -> None:
    assert validate_segment([constraint("IN", values=["a"])], limits=LIMITS) == []
    problems = validate_segment(
        [constraint("IN", values=["a"]), constraint("NUM_LT", value="x")], limits=LIMITS
    )
    assert pointers(problems) == ["/constraints/1/value"]
    assert pointers(validate_segment("x", limits=LIMITS)) == ["/constraints"]
    many = constraint("IN", values=["1", "2"])
    limited = validate_segment([many], limits=Limits(values_per_constraint=1))
    assert [(p.pointer, p.limit) for p in limited] == [
        ("/constraints/0/values", "AURORA_MAX_VALUES_PER_CONSTRAINT")
    ]


def test_pointer_tokens_are_escaped() -> None:
    problems = check([{"a/b~c": 1}])
    assert pointers(problems) == ["/rules/0/a~1b~0c"]


def test_normalize_rules_fills_defaults_and_free_ids() -> None:
    rules = normalize_rules(
        [
            {"constraints": [{"context_name": "userId", "operator": "IN", "values": ["1"]}]},
            {"id": "r1"},
            {"constraints": [{"context_name": "v", "operator": "NUM_GT", "value": "1"}]},
        ]
    )
    assert [r["id"] for r in rules] == ["r2", "r1", "r3"]
    assert rules[0] == {
        "id": "r2",
        "constraints": [
            {
                "context_name": "userId",
                "operator": "IN",
                "values": ["1"],
                "value": None,
                "inverted": False,
                "case_insensitive": False,
            }
        ],
        "segments": [],
        "rollout": {"percentage": 100, "stickiness": "default", "group_id": None},
        "variants": [],
    }
    assert rules[2]["constraints"][0]["values"] == []


def test_normalize_rules_fills_the_flag_key_as_group_id_and_the_rules_variant_stickiness() -> None:
    rules = normalize_rules(
        [
            {"rollout": {"percentage": 10, "stickiness": "sessionId"}, "variants": [{"name": "a"}]},
            {"rollout": {"group_id": "mine"}, "variants": [{"name": "b", "stickiness": "tenant"}]},
        ],
        flag_key="checkout",
    )
    assert rules[0]["rollout"] == {
        "percentage": 10,
        "stickiness": "sessionId",
        "group_id": "checkout",
    }
    assert rules[0]["variants"][0]["stickiness"] == "sessionId"
    assert rules[1]["rollout"]["group_id"] == "mine"
    assert rules[1]["variants"][0]["stickiness"] == "tenant"
    # the old call leaves the group id null (the key of the flag evaluated)
    assert normalize_rules([{}])[0]["rollout"]["group_id"] is None


def test_normalize_variants_spreads_variable_weights_as_unleash() -> None:
    variants = normalize_variants(
        [
            {"name": "a", "weight_type": "fix", "weight": 100},
            {"name": "b"},
            {"name": "c", "weight": 5},
            {"name": "d"},
        ]
    )
    assert [v["weight"] for v in variants] == [100, 300, 300, 300]
    uneven = normalize_variants([{"name": "a"}, {"name": "b"}, {"name": "c"}])
    assert [v["weight"] for v in uneven] == [334, 333, 333]
    assert uneven[0] == {
        "name": "a",
        "weight": 334,
        "weight_type": "variable",
        "stickiness": "default",
        "payload": None,
        "overrides": [],
    }
