"""The SDK's targeted checks (issue 10) on its local copy, without a server: contexts, variants,
segments and their events, old snapshots and state files, and keys in any Unicode."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from aurora_client import AuroraClient, Change, Context, Status
from aurora_client._cache import LocalCache
from aurora_client._client import _write_atomically
from aurora_client.evaluation import Reason
from aurora_client.events import ChangeEvent

ENV = "production"


def constraint(name: str, operator: str, *values: str, value: str | None = None) -> dict[str, Any]:
    return {
        "context_name": name,
        "operator": operator,
        "values": list(values),
        "value": value,
        "inverted": False,
        "case_insensitive": False,
    }


def variant(name: str, value: str, kind: str = "string", user: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "weight": 500,
        "weight_type": "variable",
        "stickiness": "default",
        "payload": {"type": kind, "value": value},
        "overrides": [{"context_name": "userId", "values": [user]}] if user else [],
    }


def targeted(
    key: str = "checkout", version: int = 1, enabled: bool = True, **fields: Any
) -> dict[str, Any]:
    """The issue's benchmark flag: three constraints, one segment and two variants (users 1 and
    2 forced onto blue and green)."""
    rule = {
        "id": "beta-de",
        "constraints": [
            constraint("userId", "IN", "1", "2", "3"),
            constraint("country", "STR_STARTS_WITH", "DE"),
            constraint("age", "NUM_GT", value="17"),
        ],
        "segments": ["beta-testers"],
        "rollout": {"percentage": 100, "stickiness": "default", "group_id": None},
        "variants": [],
    }
    return {
        "flag_key": key,
        "environment": ENV,
        "is_enabled": enabled,
        "rollout_percentage": 100,
        "rules": [rule],
        "variants": [variant("blue", "#00f", user="1"), variant("green", "#0f0", user="2")],
        "prerequisites": [],
        "version": version,
        **fields,
    }


def plain(key: str, percentage: int, version: int = 1) -> dict[str, Any]:
    """A flag exactly as a server before targeting sent it."""
    return {
        "flag_key": key,
        "environment": ENV,
        "is_enabled": True,
        "rollout_percentage": percentage,
        "version": version,
    }


def segment(plans: tuple[str, ...] = ("beta",), version: int = 1) -> dict[str, Any]:
    return {
        "name": "beta-testers",
        "description": None,
        "environment": ENV,
        "constraints": [constraint("plan", "IN", *plans)],
        "version": version,
    }


SNAPSHOT = {"cursor": "e:5", "configs": [], "flags": [targeted()], "segments": [segment()]}


def who(user: str, country: str = "DE-BY", age: str = "30", plan: str = "beta") -> dict[str, Any]:
    return {"userId": user, "properties": {"country": country, "age": age, "plan": plan}}


def client(snapshot: dict[str, Any] = SNAPSHOT, **options: Any) -> AuroraClient:
    return AuroraClient("http://127.0.0.1:9", bootstrap=snapshot, **options)


def apply(aurora: AuroraClient, event: ChangeEvent, cursor: str) -> list[Change]:
    changes = aurora._cache.apply(event, cursor)
    aurora._notify(changes)
    return changes


# -- checks with a context ------------------------------------------------------------------


def test_a_context_is_checked_against_rules_and_segments() -> None:
    aurora = client()
    for context, expected in [
        (who("1"), True),
        (who("4"), False),  # not in the IN list
        (who("1", country="AT"), False),  # STR_STARTS_WITH fails
        (who("1", age="17"), False),  # NUM_GT fails
        (who("1", plan="free"), False),  # the segment's constraint fails
        ({"userId": "1"}, False),  # the properties are missing
    ]:
        assert aurora.is_enabled("checkout", context=context) is expected, context
        assert aurora.is_enabled("checkout", context=Context.of(context)) is expected, context


def test_a_prebuilt_context_and_a_dict_answer_the_same_variant() -> None:
    aurora = client()
    built = Context.of(who("2"))
    assert aurora.get_variant("checkout", context=built) == aurora.get_variant(
        "checkout", context=who("2")
    )
    blue = aurora.get_variant("checkout", context=who("1"))
    assert (blue.name, blue.payload, blue.enabled, blue.feature_enabled) == (
        "blue",
        {"type": "string", "value": "#00f"},
        True,
        True,
    )
    result = aurora.details("checkout", who("1"))
    assert result is not None
    assert (result.enabled, result.variant.name, result.rule_id) == (True, "blue", "beta-de")


def test_a_flag_off_for_the_context_answers_the_disabled_variant() -> None:
    aurora = client()
    off = aurora.get_variant("checkout", context=who("4"))
    assert (off.name, off.enabled, off.feature_enabled) == ("disabled", False, False)
    switched_off = client({**SNAPSHOT, "flags": [targeted(enabled=False)]})
    off = switched_off.get_variant("checkout", context=who("1"))
    assert (off.name, off.enabled, off.feature_enabled) == ("disabled", False, False)
    assert switched_off.is_enabled("checkout", context=who("1")) is False


def test_an_unknown_flag_answers_the_default_with_a_context() -> None:
    aurora = client()
    assert aurora.is_enabled("nope", context=who("1")) is False
    assert aurora.is_enabled("nope", context=who("1"), default=True) is True
    missing = aurora.get_variant("nope", context=who("1"))
    assert (missing.name, missing.enabled, missing.feature_enabled) == ("disabled", False, False)
    fallback = aurora.get_variant("checkout", context=who("1"))
    assert aurora.get_variant("nope", who("1"), default=fallback) is fallback
    assert aurora.details("nope", who("1")) is None
    # Nothing loaded at all: the same defaults, as for is_enabled(user_id) today.
    empty = AuroraClient("http://127.0.0.1:9")
    assert empty.status is Status.NOT_READY
    assert empty.is_enabled("checkout", context=who("1"), default=True) is True
    assert empty.get_variant("checkout", context=who("1")).name == "disabled"


def test_a_user_id_and_a_context_together_are_refused() -> None:
    with pytest.raises(TypeError, match="not both"):
        client().is_enabled("checkout", "1", context=who("1"))


def test_a_stale_client_serves_what_it_has() -> None:
    """Like is_enabled(user_id) today: a copy that is not confirmed live is still served; the
    freshness is `status` (and OpenFeature's STALE reason)."""
    aurora = client()
    assert aurora.status is Status.STALE
    assert aurora.is_enabled("checkout", context=who("1")) is True


def test_user_id_checks_of_a_targeted_flag_go_through_its_rules() -> None:
    aurora = client()
    assert aurora.is_enabled("checkout", "1") is False  # the rule needs country, age and plan
    assert aurora.evaluation("checkout", "1") == (False, Reason.ROLLOUT_OUT, None)
    everyone = targeted(rules=[{**targeted()["rules"][0], "constraints": [], "segments": []}])
    aurora = client({**SNAPSHOT, "flags": [everyone]})
    assert aurora.is_enabled("checkout", "1") is True
    assert aurora.evaluation("checkout", "1") == (True, Reason.ROLLOUT_IN, None)
    off = client({**SNAPSHOT, "flags": [targeted(enabled=False)]})
    assert off.evaluation("checkout", "1") == (False, Reason.DISABLED, None)


# -- flags as they were before targeting ----------------------------------------------------

OLD_SNAPSHOT = {"cursor": "e:3", "configs": [], "flags": [plain("beta", 30), plain("all", 100)]}


def test_a_snapshot_from_before_targeting_loads_and_keeps_every_cohort() -> None:
    aurora = client(OLD_SNAPSHOT)
    assert aurora.cursor == "e:3"
    rng = random.Random(7)
    users = [str(rng.randrange(10**9)) for _ in range(2_000)] + [str(n) for n in range(2_000)]
    for user in users:
        expected = aurora.evaluation("beta", user)
        assert expected is not None
        assert aurora.is_enabled("beta", user) is expected.enabled
        assert aurora.is_enabled("beta", context={"userId": user}) is expected.enabled
        assert aurora.is_enabled("beta", context=Context.of({"userId": user})) is expected.enabled
    assert 0.25 < sum(aurora.is_enabled("beta", user) for user in users) / len(users) < 0.35
    assert aurora.is_enabled("all") is True
    assert aurora.is_enabled("all", context={}) is True


def test_a_state_file_from_before_targeting_still_loads(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    # What a client before issue 10 wrote: no "segments", flags without rules.
    state_file.write_text(json.dumps({**OLD_SNAPSHOT, "environment": ENV, "service_name": None}))
    aurora = client({}, cache_file=state_file)
    assert (aurora.cursor, aurora.is_enabled("all"), aurora.loaded) == ("e:3", True, True)


# -- segments and their events --------------------------------------------------------------


def test_a_segment_change_is_one_event_that_changes_every_flag_using_it() -> None:
    two = {**SNAPSHOT, "flags": [targeted("checkout"), targeted("search")]}
    aurora = client(two)
    seen: list[Change] = []
    aurora.on_change(seen.append)
    assert aurora.is_enabled("search", context=who("1", plan="pro")) is False
    pro = segment(("beta", "pro"), version=2)
    changes = apply(
        aurora, ChangeEvent("segment", "upsert", "beta-testers", ENV, None, 2, pro), "e:6"
    )
    assert changes == seen == [Change("segment", "beta-testers", segment(), pro)]
    assert aurora.cursor == "e:6"
    for key in ("checkout", "search"):
        assert aurora.is_enabled(key, context=who("1", plan="pro")) is True


def test_segment_events_apply_by_version() -> None:
    aurora = client()
    newer = segment(("pro",), version=3)
    apply(aurora, ChangeEvent("segment", "upsert", "beta-testers", ENV, None, 3, newer), "e:6")
    older = segment(("beta",), version=2)
    assert (
        apply(aurora, ChangeEvent("segment", "upsert", "beta-testers", ENV, None, 2, older), "e:7")
        == []
    )
    assert aurora.cursor == "e:7"
    assert aurora.is_enabled("checkout", context=who("1", plan="beta")) is False
    assert aurora.is_enabled("checkout", context=who("1", plan="pro")) is True


def test_a_deleted_segment_is_gone_from_the_copy_and_the_state_file(tmp_path: Path) -> None:
    aurora = client()
    gone = ChangeEvent("segment", "delete", "beta-testers", ENV, None, 2, None)
    (change,) = apply(aurora, gone, "e:6")
    assert (change.kind, change.key, change.old, change.new) == (
        "segment",
        "beta-testers",
        segment(),
        None,
    )
    assert aurora._cache.snapshot()["segments"] == []
    # A later snapshot that has it again restores it.
    aurora._cache.load({**SNAPSHOT, "segments": [segment(version=3)]})
    assert aurora.is_enabled("checkout", context=who("1")) is True


MALFORMED = {
    "segment constraints not a list": ("segment", {**segment(version=2), "constraints": "x"}),
    "a segment constraint not an object": ("segment", {**segment(version=2), "constraints": [1]}),
    "a segment without a name": ("segment", {**segment(version=2), "name": None}),
    "flag rules not a list": ("flag", targeted(version=2, rules={"id": "r1"})),
    "a flag variant not an object": ("flag", targeted(version=2, variants=["blue"])),
    "flag prerequisites not a list": ("flag", targeted(version=2, prerequisites="parent")),
}


@pytest.mark.parametrize(("kind", "state"), MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_targeting_event_changes_nothing(kind: str, state: dict[str, Any]) -> None:
    """A garbled list must not be read as an empty one (which would match everyone)."""
    aurora = client()
    key = "beta-testers" if kind == "segment" else "checkout"
    bad = ChangeEvent(kind, "upsert", key, ENV, None, 2, state)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        aurora._cache.apply(bad, "e:6")
    assert aurora.cursor == "e:5"  # a resume asks for it again
    assert aurora.is_enabled("checkout", context=who("1", plan="free")) is False
    with pytest.raises(TypeError):
        aurora._cache.load({**SNAPSHOT, f"{kind}s": [state]})
    assert aurora.cursor == "e:5"


def test_a_fixed_segment_event_is_applied_after_a_malformed_one() -> None:
    aurora = client()
    broken = {**segment(version=2), "constraints": "plan IN beta"}
    with pytest.raises(TypeError):
        aurora._cache.apply(
            ChangeEvent("segment", "upsert", "beta-testers", ENV, None, 2, broken), "e:6"
        )
    assert aurora.cursor == "e:5"  # a resume asks for it again
    assert aurora.is_enabled("checkout", context=who("1")) is True
    fixed = segment(("pro",), version=2)
    event = ChangeEvent("segment", "upsert", "beta-testers", ENV, None, 2, fixed)
    assert [c.key for c in aurora._cache.apply(event, "e:6")] == ["beta-testers"]


def test_a_change_of_an_unknown_kind_is_skipped() -> None:
    """A newer server's kind of change must not stop an older client's stream."""
    aurora = client()
    event = ChangeEvent.from_dict(
        {"kind": "webhook", "op": "upsert", "key": "x", "environment": ENV, "version": 1}
    )
    assert aurora._cache.apply(event, "e:6") == []
    assert aurora.cursor == "e:6"


def test_a_flag_event_moves_a_flag_between_plain_and_targeted() -> None:
    aurora = client(OLD_SNAPSHOT)
    assert aurora.is_enabled("all", "4") is True
    event = ChangeEvent("flag", "upsert", "all", ENV, None, 2, targeted("all", version=2))
    (change,) = apply(aurora, event, "e:4")
    assert change.new == aurora.all_flags()["all"]
    assert aurora.all_flags()["all"].version == 2
    assert aurora.is_enabled("all", "4") is False  # its rule applies now
    assert aurora.is_enabled("all", context=who("3")) is False  # its segment is not known yet
    new_segment = ChangeEvent("segment", "upsert", "beta-testers", ENV, None, 1, segment())
    apply(aurora, new_segment, "e:5")
    assert aurora.is_enabled("all", context=who("3")) is True
    back = ChangeEvent("flag", "upsert", "all", ENV, None, 3, plain("all", 100, version=3))
    apply(aurora, back, "e:6")
    assert aurora.is_enabled("all", "4") is True
    assert aurora.get_variant("all", context=who("1")).name == "disabled"  # no variants now
    gone = ChangeEvent("flag", "delete", "all", ENV, None, 4, None)
    apply(aurora, gone, "e:7")
    assert aurora.is_enabled("all", context=who("1"), default=True) is True
    assert "all" not in aurora.all_flags()


def test_a_snapshot_reports_segment_differences() -> None:
    cache = LocalCache(ENV, None)
    cache.load(SNAPSHOT)
    assert cache.load(SNAPSHOT) == []
    changes = cache.load({**SNAPSHOT, "segments": [segment(("pro",), version=2)]})
    assert changes == [Change("segment", "beta-testers", segment(), segment(("pro",), version=2))]
    changes = cache.load({**SNAPSHOT, "segments": []})
    assert [(c.kind, c.new) for c in changes] == [("segment", None)]


BAD_SEGMENTS = {
    "segments not a list": {"segments": {"beta-testers": segment()}},
    "a segment not an object": {"segments": ["beta-testers"]},
    "a segment of another environment": {"segments": [{**segment(), "environment": "staging"}]},
}


@pytest.mark.parametrize("bad", BAD_SEGMENTS.values(), ids=BAD_SEGMENTS.keys())
def test_a_state_file_with_unusable_segments_is_ignored(
    tmp_path: Path, bad: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    state_file = tmp_path / "state.json"
    state_file.write_text(json.dumps({**SNAPSHOT, "cursor": "e:9", **bad}))
    aurora = client(OLD_SNAPSHOT, cache_file=state_file)
    assert aurora.cursor == "e:3"  # the bootstrap, not the file
    assert any(str(state_file) in r.getMessage() for r in caplog.records)


def test_the_state_file_keeps_rules_variants_and_segments(tmp_path: Path) -> None:
    aurora = client()
    apply(
        aurora,
        ChangeEvent("segment", "upsert", "beta-testers", ENV, None, 2, segment(("pro",), 2)),
        "e:6",
    )
    state_file = tmp_path / "state.json"
    _write_atomically(state_file, aurora._cache.snapshot())
    restarted = AuroraClient("http://127.0.0.1:9", cache_file=state_file)
    assert restarted.cursor == "e:6"
    assert restarted.is_enabled("checkout", context=who("1", plan="pro")) is True
    assert restarted.is_enabled("checkout", context=who("1", plan="beta")) is False
    assert restarted.get_variant("checkout", context=who("2", plan="pro")).name == "green"


# -- keys in any Unicode --------------------------------------------------------------------

UNICODE_KEYS = ["Hellø_Wørld", "🚀-launch", "ключ", "a/b?c#d%e f+g&h"]


@pytest.mark.parametrize("key", UNICODE_KEYS)
def test_any_unicode_flag_key_is_checked_changed_and_saved(tmp_path: Path, key: str) -> None:
    flags = [targeted(key), plain(key + "-plain", 100)]
    aurora = client({"cursor": "e:1", "flags": flags, "segments": [segment()]})
    assert aurora.is_enabled(key, context=who("1")) is True
    assert aurora.is_enabled(key + "-plain", "1") is True
    event = ChangeEvent.from_dict(
        json.loads(
            json.dumps(
                {
                    "kind": "flag",
                    "op": "upsert",
                    "key": key,
                    "environment": ENV,
                    "version": 2,
                    "state": targeted(key, version=2, enabled=False),
                }
            )
        )
    )
    assert [c.key for c in apply(aurora, event, "e:2")] == [key]
    assert aurora.is_enabled(key, context=who("1")) is False
    state_file = tmp_path / "state.json"
    _write_atomically(state_file, aurora._cache.snapshot())
    restarted = AuroraClient("http://127.0.0.1:9", cache_file=state_file)
    assert set(restarted.all_flags()) == {key, key + "-plain"}
    assert restarted.is_enabled(key + "-plain", "1") is True
