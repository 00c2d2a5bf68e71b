"""The mapping of Unleash's client features document onto our format (service.targeting.unleash)."""

from __future__ import annotations

from typing import Any

import pytest
from aurora_client.targeting import Context, Flag, Segment, evaluate, is_enabled

from service.targeting.unleash import UnsupportedStrategy, convert


def one(strategy: dict[str, Any], **feature: Any) -> dict[str, Any]:
    document = {
        "version": 1,
        "features": [{"name": "f", "enabled": True, "strategies": [strategy], **feature}],
    }
    conversion = convert(document)
    return conversion.flags[0]


def rule_of(strategy: dict[str, Any]) -> dict[str, Any]:
    rule: dict[str, Any] = one(strategy)["rules"][0]
    return rule


def enabled(item: dict[str, Any], **context: Any) -> bool:
    f = Flag.of(item)
    return is_enabled(f, Context.of(context), {f.key: f}, {})


def test_default() -> None:
    assert rule_of({"name": "default"}) == {
        "id": "r1",
        "constraints": [],
        "segments": [],
        "rollout": {"percentage": 100, "stickiness": "default", "group_id": None},
        "variants": [],
    }


def test_user_with_id() -> None:
    rule = rule_of({"name": "userWithId", "parameters": {"userIds": "123, 222,88"}})
    assert rule["constraints"] == [
        {
            "context_name": "userId",
            "operator": "IN",
            "values": ["123", "222", "88"],
            "value": None,
            "inverted": False,
            "case_insensitive": False,
        }
    ]


@pytest.mark.parametrize(
    ("name", "stickiness"),
    [("gradualRolloutUserId", "userId"), ("gradualRolloutSessionId", "sessionId")],
)
def test_gradual_rollouts(name: str, stickiness: str) -> None:
    rule = rule_of({"name": name, "parameters": {"percentage": "50", "groupId": "AB12A"}})
    assert rule["rollout"] == {"percentage": 50, "stickiness": stickiness, "group_id": "AB12A"}
    assert rule["constraints"] == []


def test_gradual_rollout_random() -> None:
    rule = rule_of({"name": "gradualRolloutRandom", "parameters": {"percentage": "30"}})
    # Unleash holds when its draw 1..99 is below 30: 29 of 99, the nearest percentage is 29.
    assert rule["rollout"] == {"percentage": 29, "stickiness": "random", "group_id": None}


def test_flexible_rollout() -> None:
    rule = rule_of(
        {
            "name": "flexibleRollout",
            "parameters": {"rollout": "10", "stickiness": "tenant", "groupId": "g"},
        }
    )
    assert rule["rollout"] == {"percentage": 10, "stickiness": "tenant", "group_id": "g"}
    defaults = rule_of({"name": "flexibleRollout", "parameters": {"rollout": "10"}})
    assert defaults["rollout"] == {"percentage": 10, "stickiness": "default", "group_id": None}


def test_remote_address_is_in_cidr_with_invalid_entries_ignored() -> None:
    document = {
        "features": [
            {
                "name": "f",
                "enabled": True,
                "strategies": [
                    {
                        "name": "remoteAddress",
                        "parameters": {"IPs": "192.168.0.1, 192.invalid, 10.0.0.0/8"},
                    }
                ],
            }
        ]
    }
    conversion = convert(document)
    item = conversion.flags[0]
    assert item["rules"][0]["constraints"][0]["operator"] == "IN_CIDR"
    assert item["rules"][0]["constraints"][0]["values"] == [
        "192.168.0.1",
        "192.invalid",
        "10.0.0.0/8",
    ]
    assert any("192.invalid" in w for w in conversion.warnings)
    assert enabled(item, remoteAddress="10.9.9.9")
    assert enabled(item, remoteAddress="192.168.0.1")
    assert not enabled(item, remoteAddress="192.168.0.2")


def test_application_hostname_is_a_case_insensitive_hostname_property() -> None:
    item = one({"name": "applicationHostname", "parameters": {"hostNames": "Web-1, web-2"}})
    constraint = item["rules"][0]["constraints"][0]
    assert (
        constraint["context_name"],
        constraint["operator"],
        constraint["values"],
        constraint["case_insensitive"],
    ) == ("hostname", "IN", ["web-1", "web-2"], True)
    assert enabled(item, hostname="WEB-1")
    assert not enabled(item, hostname="web-3")
    assert not enabled(item)


@pytest.mark.parametrize(
    "strategy",
    [
        {"name": "userWithId", "parameters": {}},
        {"name": "gradualRolloutUserId", "parameters": {"percentage": "50"}},
        {"name": "gradualRolloutSessionId", "parameters": {"groupId": "g"}},
        {"name": "gradualRolloutRandom", "parameters": {"percentage": "abc"}},
        {"name": "flexibleRollout", "parameters": {}},
        {"name": "remoteAddress", "parameters": {}},
    ],
)
def test_a_strategy_missing_its_parameters_never_matches(strategy: dict[str, Any]) -> None:
    conversion = convert(
        {
            "features": [
                {"name": "f", "enabled": True, "strategies": [strategy, {"name": "default"}]}
            ]
        }
    )
    item = conversion.flags[0]
    assert item["rules"][0]["rollout"]["percentage"] == 0
    assert "never matches" in conversion.warnings[0]
    assert enabled(item, userId="1", sessionId="1", remoteAddress="1.1.1.1")  # the default one


def test_a_custom_strategy_is_refused_naming_the_flag() -> None:
    with pytest.raises(UnsupportedStrategy) as caught:
        convert(
            {
                "features": [
                    {"name": "checkout", "enabled": True, "strategies": [{"name": "myCustom"}]}
                ]
            }
        )
    assert (caught.value.flag, caught.value.strategy) == ("checkout", "myCustom")
    assert "checkout" in str(caught.value)


def test_constraints_carry_over_and_in_ignores_case_insensitive() -> None:
    rule = rule_of(
        {
            "name": "default",
            "constraints": [
                {
                    "contextName": "email",
                    "operator": "STR_ENDS_WITH",
                    "values": ["x.com"],
                    "caseInsensitive": True,
                    "inverted": True,
                },
                {"contextName": "env", "operator": "IN", "values": ["a"], "caseInsensitive": True},
                {"contextName": "v", "operator": "SEMVER_GT", "value": "1.0.0"},
            ],
        }
    )
    assert rule["constraints"] == [
        {
            "context_name": "email",
            "operator": "STR_ENDS_WITH",
            "values": ["x.com"],
            "value": None,
            "inverted": True,
            "case_insensitive": True,
        },
        {
            "context_name": "env",
            "operator": "IN",
            "values": ["a"],
            "value": None,
            "inverted": False,
            "case_insensitive": False,
        },
        {
            "context_name": "v",
            "operator": "SEMVER_GT",
            "values": [],
            "value": "1.0.0",
            "inverted": False,
            "case_insensitive": False,
        },
    ]


def test_never_matching_constraints_are_kept_with_warnings() -> None:
    document = {
        "features": [
            {
                "name": "f",
                "enabled": True,
                "strategies": [
                    {
                        "name": "default",
                        "constraints": [
                            {"contextName": "x", "operator": "NOT_A_VALID_OPERATOR", "value": "1"},
                            {"contextName": "x", "operator": "REGEX", "value": "(a"},
                            {"contextName": "x", "operator": "SEMVER_EQ", "value": "v1.0.0"},
                        ],
                    }
                ],
            }
        ]
    }
    conversion = convert(document)
    assert len(conversion.flags[0]["rules"][0]["constraints"]) == 3
    assert len(conversion.warnings) == 3
    assert "keeps this flag off" in conversion.warnings[0]


def test_segments_map_ids_to_names() -> None:
    document = {
        "features": [
            {
                "name": "f",
                "enabled": True,
                "strategies": [{"name": "default", "segments": [1, 2, 404]}],
            }
        ],
        "segments": [
            {
                "id": 1,
                "name": "beta",
                "constraints": [{"contextName": "plan", "operator": "IN", "values": ["pro"]}],
            },
            {"id": 2, "constraints": []},
        ],
    }
    conversion = convert(document)
    assert [s["name"] for s in conversion.segments] == ["beta", "segment-2"]
    assert conversion.flags[0]["rules"][0]["segments"] == ["beta", "segment-2", "segment-404"]
    assert any("segment 404 not found" in w for w in conversion.warnings)
    flags = {"f": Flag.of(conversion.flags[0])}
    segments = {s["name"]: Segment.of(s) for s in conversion.segments}
    assert (
        evaluate(flags["f"], Context.of({"plan": "pro"}), flags, segments).error_code
        == "SEGMENT_NOT_FOUND"
    )


def test_flag_and_strategy_variants() -> None:
    item = one(
        {
            "name": "flexibleRollout",
            "parameters": {"rollout": "100"},
            "variants": [
                {
                    "name": "s",
                    "weight": 1000,
                    "weightType": "fix",
                    "stickiness": "x",
                    "payload": {"type": "csv", "value": "a,b"},
                    "overrides": [{"contextName": "userId", "values": ["1"]}],
                },
            ],
        },
        variants=[
            {
                "name": "v",
                "weight": 1000,
                "weightType": "variable",
                "stickiness": "tenant",
                "payload": {"type": "json", "value": "{}"},
                "overrides": [{"contextName": "userId", "values": ["9"]}],
            }
        ],
    )
    assert item["variants"] == [
        {
            "name": "v",
            "weight": 1000,
            "weight_type": "variable",
            "stickiness": "tenant",
            "payload": {"type": "json", "value": "{}"},
            "overrides": [{"context_name": "userId", "values": ["9"]}],
        }
    ]
    # Unleash's engine ignores overrides on strategy variants, and picks them with the
    # strategy's stickiness (absent: default), not the variant's
    assert item["rules"][0]["variants"][0]["overrides"] == []
    assert item["rules"][0]["variants"][0]["stickiness"] == "default"
    assert item["rules"][0]["variants"][0]["payload"] == {"type": "csv", "value": "a,b"}


def test_strategy_variants_take_the_strategys_stickiness_and_group_id() -> None:
    variants = [{"name": "s", "weight": 1000, "weightType": "variable", "stickiness": "x"}]
    rule = rule_of(
        {
            "name": "flexibleRollout",
            "parameters": {"rollout": "50", "stickiness": "tenant", "groupId": "g"},
            "variants": variants,
        }
    )
    assert rule["variants"][0]["stickiness"] == "tenant"
    default = rule_of({"name": "default", "parameters": {"groupId": "g2"}, "variants": variants})
    assert default["rollout"] == {"percentage": 100, "stickiness": "default", "group_id": "g2"}
    assert default["variants"][0]["stickiness"] == "default"


def test_a_percentage_beyond_rusts_usize_never_matches() -> None:
    rule = rule_of({"name": "gradualRolloutRandom", "parameters": {"percentage": str(2**64)}})
    assert rule["rollout"]["percentage"] == 0


def test_a_feature_without_strategies_is_on_for_everyone() -> None:
    item = convert({"features": [{"name": "f", "enabled": True, "strategies": []}]}).flags[0]
    assert (item["rules"], item["rollout_percentage"], item["is_enabled"]) == ([], 100, True)
    assert enabled(item)


def test_dependencies_become_prerequisites_with_warnings() -> None:
    document = {
        "features": [
            {"name": "a", "enabled": True, "strategies": [], "dependencies": [{"feature": "b"}]},
            {
                "name": "b",
                "enabled": True,
                "strategies": [],
                "dependencies": [{"feature": "a", "enabled": False, "variants": ["x"]}],
            },
            {
                "name": "c",
                "enabled": True,
                "strategies": [],
                "dependencies": [{"feature": "ghost"}],
            },
        ]
    }
    conversion = convert(document)
    assert conversion.flags[1]["prerequisites"] == [
        {"flag_key": "a", "enabled": False, "variants": ["x"]}
    ]
    assert any(w.startswith("prerequisite cycle: a -> b -> a") for w in conversion.warnings)
    assert any("'ghost' not found" in w for w in conversion.warnings)


def test_flag_fields() -> None:
    item = convert(
        {
            "features": [
                {"name": "Hellø_Wørld", "description": "d", "enabled": False, "strategies": []}
            ]
        }
    ).flags[0]
    assert {k: item[k] for k in ("flag_key", "flag_name", "description", "is_enabled")} == {
        "flag_key": "Hellø_Wørld",
        "flag_name": "Hellø_Wørld",
        "description": "d",
        "is_enabled": False,
    }
