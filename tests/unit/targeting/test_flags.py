"""Flags with targeting: rules, segments, variants, prerequisites, reasons, explain, Context."""

from __future__ import annotations

from typing import Any

import pytest
from aurora_client.evaluation import bucket_of
from aurora_client.evaluation import evaluate as legacy_evaluate
from aurora_client.state import FlagState
from aurora_client.targeting import (
    Context,
    Flag,
    Reason,
    Segment,
    evaluate,
    explain,
    is_enabled,
)
from aurora_client.targeting.rules import rollout_bucket
from mmh3 import hash as murmur3


def flag(key: str = "f", **item: Any) -> Flag:
    return Flag.of({"flag_key": key, "is_enabled": True, "version": 3, **item})


def ctx(**data: Any) -> Context:
    return Context.of(data)


def answer(
    f: Flag,
    context: Context,
    flags: dict[str, Flag] | None = None,
    segments: dict[str, Segment] | None = None,
) -> dict[str, Any]:
    flags = flags if flags is not None else {f.key: f}
    result = evaluate(f, context, flags, segments or {})
    assert is_enabled(f, context, flags, segments or {}) is result.enabled
    return result.to_dict()


def user_in(*ids: str) -> dict[str, Any]:
    return {"context_name": "userId", "operator": "IN", "values": list(ids)}


# --- Context -------------------------------------------------------------------------------


def test_context_of_reads_the_json_shape() -> None:
    context = Context.of(
        {
            "userId": 123,
            "sessionId": "s",
            "remoteAddress": "10.0.0.1",
            "environment": "dev",
            "appName": "shop",
            "currentTime": "2026-12-02T12:00:00Z",
            "country": "DE",  # unknown top-level key: a property
            "beta": True,
            "ratio": 12.0,
            "properties": {"country": "FR", "gone": None, "tags": ["a"]},
        }
    )
    assert context.user_id == "123"
    assert context.value("userId") == "123"
    assert context.value("appName") == "shop"
    # A top-level key wins over the same property, as UnleashClient answers (tests/differential).
    assert context.properties == {"country": "DE", "beta": "true", "ratio": "12", "tags": '["a"]'}
    assert context.value("gone") is None
    assert Context.of(None) == Context.of({}) == Context()
    assert Context.of({"properties": ["not", "a", "mapping"]}).properties == {}
    assert Context(user_id="1").value("userId") == "1"
    assert Context.of({"userId": "1", "properties": {"a": "b"}}).to_dict() == {
        "userId": "1",
        "properties": {"a": "b"},
    }


# --- flags without rules: today's rollout ----------------------------------------------------


def test_a_flag_without_rules_keeps_todays_cohorts() -> None:
    for percentage in (0, 1, 37, 50, 99, 100):
        f = flag("checkout", rollout_percentage=percentage)
        state = FlagState("checkout", "production", True, percentage, 1)
        for user in range(10_000):
            expected = legacy_evaluate(state, str(user)).enabled
            assert is_enabled(f, Context(user_id=str(user)), {}, {}) is expected


def test_a_flag_without_rules_reasons() -> None:
    assert answer(flag(rollout_percentage=100), ctx()) == {
        "enabled": True,
        "variant": {"name": "disabled", "enabled": False, "feature_enabled": True},
        "reason": "DEFAULT",
        "rule_index": None,
        "rule_id": None,
        "error_code": None,
    }
    partial = flag("AB12A", rollout_percentage=50)
    assert bucket_of("AB12A", "122") == 23
    assert answer(partial, ctx(userId="122"))["reason"] == "SPLIT"
    assert answer(partial, ctx(userId="155"))["enabled"] is False
    no_user = answer(partial, ctx(sessionId="x"))
    assert (no_user["enabled"], no_user["reason"]) == (False, "SPLIT")


def test_a_disabled_flag() -> None:
    result = answer(Flag.of({"flag_key": "f", "is_enabled": False}), ctx(userId="1"))
    assert result["reason"] == "DISABLED"
    assert result["variant"] == {"name": "disabled", "enabled": False, "feature_enabled": False}


# --- rules -----------------------------------------------------------------------------------


def test_the_first_matching_rule_decides() -> None:
    f = flag(rules=[{"id": "vip", "constraints": [user_in("1")]}, {"id": "all"}])
    assert answer(f, ctx(userId="1"))["rule_id"] == "vip"
    other = answer(f, ctx(userId="2"))
    assert (other["reason"], other["rule_index"], other["rule_id"]) == ("TARGETING_MATCH", 1, "all")


def test_no_rule_matching_is_default_off() -> None:
    f = flag(rules=[{"constraints": [user_in("1")]}])
    result = answer(f, ctx(userId="2"))
    assert (result["enabled"], result["reason"], result["rule_id"]) == (False, "DEFAULT", None)


def test_rule_ids_default_to_their_position() -> None:
    f = flag(rules=[{"constraints": [user_in("1")]}, {}])
    assert answer(f, ctx())["rule_id"] == "r2"


def test_rollout_buckets_on_group_and_stickiness() -> None:
    rule = {"rollout": {"percentage": 50, "stickiness": "userId", "group_id": "AB12A"}}
    f = flag(rules=[rule])
    assert rollout_bucket("AB12A", "122") == 23
    assert answer(f, ctx(userId="122"))["reason"] == "SPLIT"
    assert answer(f, ctx(userId="155"))["enabled"] is False  # bucket 100
    assert answer(f, ctx(sessionId="122"))["enabled"] is False  # no userId: not in


def test_rollout_group_defaults_to_the_flag_key() -> None:
    f = flag("Feature.flexibleRollout.10", rules=[{"rollout": {"percentage": 10}}])
    assert answer(f, ctx(userId="174"))["enabled"] is True
    assert answer(f, ctx(userId="499"))["enabled"] is False
    assert answer(f, ctx(sessionId="174"))["enabled"] is True  # default: userId, else sessionId


def test_rollout_on_a_custom_stickiness() -> None:
    f = flag("g", rules=[{"rollout": {"percentage": 50, "stickiness": "tenant"}}])
    tenant = next(str(t) for t in range(100) if rollout_bucket("g", str(t)) <= 50)
    assert answer(f, ctx(tenant=tenant))["enabled"] is True
    assert answer(f, ctx(userId="1"))["enabled"] is False  # no tenant: not in


@pytest.mark.parametrize("stickiness", ["default", "random"])
def test_a_full_rollout_without_a_stickiness_value_is_on(stickiness: str) -> None:
    f = flag(rules=[{"rollout": {"percentage": 100, "stickiness": stickiness}}])
    assert answer(f, ctx())["reason"] == "TARGETING_MATCH"
    off = flag(rules=[{"rollout": {"percentage": 0, "stickiness": stickiness}}])
    assert answer(off, ctx(userId="1"))["enabled"] is False


def test_a_full_rollout_on_user_id_needs_a_user() -> None:
    f = flag(rules=[{"rollout": {"percentage": 100, "stickiness": "userId"}}])
    assert answer(f, ctx())["enabled"] is False
    assert answer(f, ctx(userId="1"))["enabled"] is True


# --- segments ---------------------------------------------------------------------------------


def test_segments_must_hold_too() -> None:
    segments = {
        "beta": Segment.of(
            {
                "name": "beta",
                "constraints": [{"context_name": "plan", "operator": "IN", "values": ["pro"]}],
                "version": 2,
            }
        )
    }
    f = flag(rules=[{"constraints": [user_in("1", "2")], "segments": ["beta"]}])
    assert answer(f, ctx(userId="1", plan="pro"), segments=segments)["enabled"] is True
    assert answer(f, ctx(userId="1", plan="free"), segments=segments)["enabled"] is False
    assert answer(f, ctx(userId="3", plan="pro"), segments=segments)["enabled"] is False
    assert segments["beta"].version == 2


def test_a_missing_segment_turns_the_flag_off_with_an_error() -> None:
    f = flag(rules=[{"segments": ["gone"]}, {}])
    result = answer(f, ctx(userId="1"), segments={})
    assert (result["enabled"], result["reason"], result["error_code"]) == (
        False,
        "ERROR",
        "SEGMENT_NOT_FOUND",
    )


def test_a_broken_constraint_turns_the_whole_flag_off() -> None:
    # Unleash's engine cannot compile NUM_EQ "abc", so it keeps the flag off, other rules too.
    f = flag(
        rules=[{"constraints": [{"context_name": "x", "operator": "NUM_EQ", "value": "abc"}]}, {}]
    )
    result = answer(f, ctx(userId="1"))
    assert (result["enabled"], result["reason"], result["error_code"]) == (
        False,
        "ERROR",
        "INVALID_RULE",
    )
    assert f.error is not None
    broken_segment = {
        "s": Segment.of({"name": "s", "constraints": [{"context_name": "x", "operator": "BOGUS"}]})
    }
    g = flag(rules=[{"segments": ["s"]}])
    assert answer(g, ctx(), segments=broken_segment)["error_code"] == "INVALID_RULE"


def test_a_rollout_above_100_is_broken() -> None:
    f = flag(rules=[{"rollout": {"percentage": 150}}, {}])
    assert answer(f, ctx())["error_code"] == "INVALID_RULE"


# --- variants ---------------------------------------------------------------------------------


def two_variants(**extra: Any) -> list[dict[str, Any]]:
    return [
        {"name": "a", "weight": 500, "payload": {"type": "string", "value": "A"}, **extra},
        {"name": "b", "weight": 500, "payload": {"type": "json", "value": '{"b": 1}'}},
    ]


def variant_bucket(group: str, value: str, total: int) -> int:
    return murmur3(f"{group}:{value}", 86028157, False) % total + 1


def test_flag_variants_split_by_weight() -> None:
    f = flag(
        "Feature.Variants.D",
        variants=[
            {"name": "variant1", "weight": 1},
            {"name": "variant2", "weight": 49},
            {"name": "variant3", "weight": 50},
        ],
    )
    for user in ("712", "525", "537"):
        bucket = variant_bucket("Feature.Variants.D", user, 100)
        expected = "variant1" if bucket <= 1 else "variant2" if bucket <= 50 else "variant3"
        result = answer(f, ctx(userId=user))
        assert result["variant"]["name"] == expected
        assert result["reason"] == "SPLIT"


def test_variant_payloads_and_feature_enabled() -> None:
    f = flag(
        variants=[{"name": "only", "weight": 1000, "payload": {"type": "number", "value": "1.2"}}]
    )
    result = answer(f, ctx(userId="1"))
    assert result["variant"] == {
        "name": "only",
        "payload": {"type": "number", "value": "1.2"},
        "enabled": True,
        "feature_enabled": True,
    }
    assert result["reason"] == "DEFAULT"  # a single variant is no split


def test_an_override_forces_its_variant() -> None:
    variants = two_variants()
    variants[1]["overrides"] = [{"context_name": "userId", "values": ["7", "8"]}]
    f = flag(variants=variants)
    result = answer(f, ctx(userId="8"))
    assert result["variant"]["name"] == "b"
    assert result["reason"] == "DEFAULT"  # the override decided, not the split


def test_fixed_and_variable_weights_are_used_as_stored() -> None:
    f = flag(
        "w", variants=[{"name": "x", "weight": 1, "weight_type": "fix"}, {"name": "y", "weight": 0}]
    )
    assert answer(f, ctx(userId="any"))["variant"]["name"] == "x"


def test_variant_stickiness_is_the_first_variants() -> None:
    f = flag(
        "Feature.flexible.rollout.custom.stickiness_100",
        variants=[
            {"name": n, "weight": 25, "stickiness": "customField"}
            for n in ("blue", "red", "green", "yellow")
        ],
    )
    assert answer(f, ctx(customField="616"))["variant"]["name"] == "blue"
    assert answer(f, ctx(customField="44"))["variant"]["name"] == "yellow"


def test_rule_variants_come_first_with_the_rules_group_and_stickiness() -> None:
    f = flag(
        rules=[
            {
                "constraints": [user_in("1", "2")],
                "rollout": {"percentage": 100, "stickiness": "default", "group_id": "grp"},
                "variants": two_variants(),
            },
            {},
        ],
        variants=[{"name": "flag-level", "weight": 1000}],
    )
    for user in ("1", "2"):
        expected = "a" if variant_bucket("grp", user, 1000) <= 500 else "b"
        result = answer(f, ctx(userId=user))
        assert result["variant"]["name"] == expected
        assert (result["reason"], result["rule_id"]) == ("SPLIT", "r1")
    assert answer(f, ctx(userId="3"))["variant"]["name"] == "flag-level"


def test_rule_variants_hash_on_the_first_variants_stickiness_else_the_rules() -> None:
    def rule_variants(stickiness: str | None) -> Flag:
        extra = {} if stickiness is None else {"stickiness": stickiness}
        return flag(
            rules=[
                {
                    "rollout": {"percentage": 100, "stickiness": "sessionId", "group_id": "g"},
                    "variants": two_variants(**extra),
                }
            ]
        )

    seen = set()
    for user, session in (("1", "s9"), ("2", "s1"), ("3", "s7"), ("4", "s2"), ("5", "s3")):
        context = ctx(userId=user, sessionId=session)
        by_user = "a" if variant_bucket("g", user, 1000) <= 500 else "b"
        by_session = "a" if variant_bucket("g", session, 1000) <= 500 else "b"
        seen.add((by_user, by_session))
        assert answer(rule_variants("default"), context)["variant"]["name"] == by_user
        assert answer(rule_variants("userId"), context)["variant"]["name"] == by_user
        assert answer(rule_variants(None), context)["variant"]["name"] == by_session
    assert {("a", "b"), ("b", "a")} & seen  # the cases tell the stickinesses apart


def test_a_rule_without_variants_falls_back_to_the_flags() -> None:
    f = flag(rules=[{"variants": []}], variants=[{"name": "v", "weight": 1000}])
    assert answer(f, ctx())["variant"]["name"] == "v"


def test_no_variants_answers_disabled_with_feature_enabled() -> None:
    assert answer(flag(rules=[{}]), ctx())["variant"] == {
        "name": "disabled",
        "enabled": False,
        "feature_enabled": True,
    }


# --- prerequisites ----------------------------------------------------------------------------


def family(*children: dict[str, Any]) -> dict[str, Flag]:
    flags = {
        "on": flag("on", rules=[{}]),
        "off": Flag.of({"flag_key": "off", "is_enabled": False}),
        "colored": flag("colored", variants=[{"name": "blue", "weight": 1000}]),
    }
    for child in children:
        flags[child["flag_key"]] = Flag.of({"is_enabled": True, "rules": [{}], **child})
    return flags


@pytest.mark.parametrize(
    ("prerequisites", "enabled"),
    [
        ([{"flag_key": "on"}], True),
        ([{"flag_key": "on", "enabled": True}], True),
        ([{"flag_key": "off"}], False),
        ([{"flag_key": "off", "enabled": False}], True),
        ([{"flag_key": "on", "enabled": False}], False),
        ([{"flag_key": "colored", "variants": ["blue"]}], True),
        ([{"flag_key": "colored", "variants": ["red"]}], False),
        ([{"flag_key": "colored", "variants": []}], True),
        ([{"flag_key": "on", "variants": ["anything"]}], True),  # a parent without variants
        ([{"flag_key": "on"}, {"flag_key": "off", "enabled": False}], True),
        ([{"flag_key": "on"}, {"flag_key": "off"}], False),
        ([{"flag_key": "ghost"}], False),
    ],
)
def test_prerequisites(prerequisites: list[dict[str, Any]], enabled: bool) -> None:
    flags = family({"flag_key": "child", "prerequisites": prerequisites})
    result = answer(flags["child"], ctx(), flags)
    assert result["enabled"] is enabled
    assert result["reason"] == ("TARGETING_MATCH" if enabled else "PREREQUISITE_FAILED")


def test_prerequisites_are_one_level_deep() -> None:
    flags = family(
        {"flag_key": "middle", "prerequisites": [{"flag_key": "on"}]},
        {"flag_key": "child", "prerequisites": [{"flag_key": "middle"}]},
    )
    assert answer(flags["middle"], ctx(), flags)["enabled"] is True
    assert answer(flags["child"], ctx(), flags)["reason"] == "PREREQUISITE_FAILED"


def test_a_prerequisite_cycle_is_an_error() -> None:
    flags = family(
        {"flag_key": "a", "prerequisites": [{"flag_key": "b"}]},
        {"flag_key": "b", "prerequisites": [{"flag_key": "a"}]},
    )
    result = answer(flags["a"], ctx(), flags)
    assert (result["enabled"], result["reason"], result["error_code"]) == (
        False,
        "ERROR",
        "PREREQUISITE_CYCLE",
    )


@pytest.mark.parametrize(("group_id", "hashed_with"), [("parent", "parent"), (None, "child")])
def test_a_parents_rollout_hashes_with_its_group_id_else_the_childs_key(
    group_id: str | None, hashed_with: str
) -> None:
    # group_id null is the key of the flag evaluated: in a prerequisite check, the dependent
    # flag's, as Unleash's engine does (normalize_rules fills the key on a native write).
    rollout = {"percentage": 50, "group_id": group_id}
    flags = {
        "parent": flag("parent", rules=[{"rollout": rollout}]),
        "child": Flag.of(
            {"flag_key": "child", "is_enabled": True, "prerequisites": [{"flag_key": "parent"}]}
        ),
    }
    differ = 0
    for user in map(str, range(100)):
        parent_on = rollout_bucket(hashed_with, user) <= 50
        assert is_enabled(flags["child"], Context(user_id=user), flags, {}) is parent_on
        assert evaluate(flags["child"], Context(user_id=user), flags, {}).enabled is parent_on
        own = rollout_bucket("parent", user) <= 50
        assert is_enabled(flags["parent"], Context(user_id=user), flags, {}) is own
        differ += own is not parent_on
    assert (differ > 0) is (group_id is None)


# --- explain ----------------------------------------------------------------------------------


def test_explain_accounts_for_every_rule_constraint_and_segment() -> None:
    segments = {
        "beta": Segment.of(
            {
                "name": "beta",
                "constraints": [{"context_name": "plan", "operator": "IN", "values": ["pro"]}],
            }
        )
    }
    flags = family(
        {
            "flag_key": "child",
            "prerequisites": [{"flag_key": "on"}],
            "rules": [
                {
                    "id": "vip",
                    "constraints": [
                        user_in("1"),
                        {
                            "context_name": "country",
                            "operator": "IN",
                            "values": ["DE"],
                            "inverted": True,
                        },
                    ],
                },
                {
                    "id": "beta",
                    "segments": ["beta", "missing"],
                    "rollout": {"percentage": 50, "group_id": "g"},
                },
            ],
            "version": 4,
        }
    )
    report = explain(flags["child"], ctx(userId="1", country="DE", plan="pro"), flags, segments)
    assert report["flag_key"] == "child"
    assert report["version"] == 4
    assert report["result"]["reason"] == "ERROR"  # the missing segment
    assert report["error"] == "segment 'missing' not found"
    assert report["prerequisites"] == [
        {
            "index": 0,
            "flag_key": "on",
            "enabled": True,
            "variants": [],
            "matched": True,
            "reason": None,
        }
    ]
    vip, beta = report["rules"]
    assert (vip["matched"], vip["reason"]) == (False, "a constraint does not hold")
    assert [c["matched"] for c in vip["constraints"]] == [True, False]
    assert vip["constraints"][1]["reason"] == "'DE' satisfies IN, and the constraint is inverted"
    assert vip["constraints"][1]["context_value"] == "DE"
    assert beta["segments"][0]["matched"] is True
    assert beta["segments"][1] == {
        "name": "missing",
        "found": False,
        "matched": False,
        "constraints": [],
    }
    assert beta["rollout"]["bucket"] == rollout_bucket("g", "1")
    assert report["rollout"] is None


def test_explain_says_why_a_constraint_fails() -> None:
    f = flag(
        rules=[
            {
                "constraints": [
                    {"context_name": "plan", "operator": "IN", "values": ["pro"]},
                    {"context_name": "age", "operator": "NUM_GT", "value": "18"},
                ]
            }
        ]
    )
    report = explain(f, ctx(age="12"), {}, {})
    missing, low = report["rules"][0]["constraints"]
    assert missing["reason"] == "context field 'plan' is missing"
    assert low["reason"] == "'12' does not satisfy NUM_GT"
    assert report["result"]["reason"] == "DEFAULT"


def test_explain_a_flag_without_rules() -> None:
    report = explain(flag("AB12A", rollout_percentage=50), ctx(userId="122"), {}, {})
    assert report["rollout"] == {"percentage": 50, "user_id": "122", "bucket": 23, "matched": True}
    assert report["rules"] == []
    assert report["result"]["reason"] == Reason.SPLIT
