"""The targeting benchmark's flags, defined once, in both formats (issue 10).

One targeted flag is a rule of three constraints (`IN` on userId, `STR_STARTS_WITH` on the
`country` property, `NUM_GT` on the `appVersion` property), one segment (`dach`: `country` IN
DE, AT, CH) and two variants; the benchmark holds FLAGS of them (`flag-000`..), each with its own
group id. A plain flag is the same key, on for everyone (Unleash: a flexibleRollout at 100 % and
nothing else; Aurora: `is_enabled` with `rollout_percentage` 100).

In Unleash, every flag is created once in the default project: its `development` environment
holds the plain strategy, its `production` environment the targeted one, so one frontend token per
environment sees exactly the 100 flags of one scenario. In Aurora, the plain flags live in the
environment `plain` and the targeted ones in `targeted`.

Subcommands (stdlib only; bench/run.sh drives them):

  unleash-seed   create the segment and the flags through Unleash's admin API, wait (bounded)
                 until its frontend API serves all of them, save its client features document
  aurora-seed    create the plain flags natively and import the targeted ones from that same
                 document (POST /api/v1/import/unleash); wait (bounded) until reads see them
  compare        evaluate the targeted flags for CONTEXT on both servers and compare the answers
  body           print the evaluate body: {"environment": "targeted", "context": CONTEXT}
  document       print unleash_document() (the import's input when Unleash is left out)
  expect         check a probe's answer for the benchmark's context (exit 1 if wrong)
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

FLAGS = 100
SEGMENT_NAME = "dach"
USER_IDS = [str(n) for n in range(100, 150)]  # the IN list; "123" is in it
CONTEXT: dict[str, Any] = {"userId": "123", "properties": {"country": "DE", "appVersion": "3"}}
AURORA_QUERY = "user_id=123&properties[country]=DE&properties[appVersion]=3"
UNLEASH_QUERY = "userId=123&properties[country]=DE&properties[appVersion]=3"
PLAIN_ENV, TARGETED_ENV = "plain", "targeted"  # Aurora's environments
UNLEASH_PLAIN_ENV, UNLEASH_TARGETED_ENV = "development", "production"
DEADLINE = 90.0  # seconds for any wait below


def flag_key(number: int) -> str:
    return f"flag-{number:03d}"


KEYS = [flag_key(n) for n in range(FLAGS)]


# --- Unleash's format ----------------------------------------------------------------------------


def unleash_constraints() -> list[dict[str, Any]]:
    return [
        {"contextName": "userId", "operator": "IN", "values": USER_IDS},
        {"contextName": "country", "operator": "STR_STARTS_WITH", "values": ["D", "A"]},
        {"contextName": "appVersion", "operator": "NUM_GT", "value": "2"},
    ]


def unleash_segment_constraints() -> list[dict[str, Any]]:
    return [{"contextName": "country", "operator": "IN", "values": ["DE", "AT", "CH"]}]


def unleash_variants() -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "weight": 500,
            "weightType": "variable",
            "stickiness": "default",
            "payload": {"type": "string", "value": colour},
        }
        for name, colour in (("blue", "#00f"), ("green", "#0f0"))
    ]


def unleash_strategy(key: str, segment_id: int) -> dict[str, Any]:
    return {
        "name": "flexibleRollout",
        "parameters": {"rollout": "100", "stickiness": "default", "groupId": key},
        "constraints": unleash_constraints(),
        "segments": [segment_id],
        "variants": unleash_variants(),
    }


def unleash_document(extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The client features document Unleash serves for the targeted flags (segments apart), as
    bench/sdk.py bootstraps UnleashClient with when no server document is at hand."""
    features = [
        {"name": key, "enabled": True, "strategies": [unleash_strategy(key, 1)], "variants": []}
        for key in KEYS
    ]
    return {
        "version": 2,
        "features": features + (extra or []),
        "segments": [{"id": 1, "name": SEGMENT_NAME, "constraints": unleash_segment_constraints()}],
    }


# --- Aurora's format (docs/TARGETING.md) --------------------------------------------------------


def aurora_constraint(constraint: dict[str, Any]) -> dict[str, Any]:
    return {
        "context_name": constraint["contextName"],
        "operator": constraint["operator"],
        "values": constraint.get("values", []),
        "value": constraint.get("value"),
        "inverted": False,
        "case_insensitive": False,
    }


def aurora_variants() -> list[dict[str, Any]]:
    return [
        {
            "name": variant["name"],
            "weight": variant["weight"],
            "weight_type": variant["weightType"],
            "stickiness": variant["stickiness"],
            "payload": variant["payload"],
            "overrides": [],
        }
        for variant in unleash_variants()
    ]


def aurora_flag(
    key: str,
    constraints: list[dict[str, Any]],
    *,
    segments: list[str],
    variants: list[dict[str, Any]],
    environment: str = TARGETED_ENV,
) -> dict[str, Any]:
    return {
        "flag_key": key,
        "flag_name": key,
        "environment": environment,
        "is_enabled": True,
        "rollout_percentage": 100,
        "rules": [
            {
                "id": "r1",
                "constraints": [aurora_constraint(c) for c in constraints],
                "segments": segments,
                "rollout": {"percentage": 100, "stickiness": "default", "group_id": None},
                "variants": variants,
            }
        ],
        "variants": [],
        "prerequisites": [],
        "version": 1,
    }


def aurora_state(extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The SDK's bootstrap (the stream snapshot's shape) for the targeted flags."""
    flags = [
        aurora_flag(key, unleash_constraints(), segments=[SEGMENT_NAME], variants=aurora_variants())
        for key in KEYS
    ]
    return {
        "configs": [],
        "flags": flags + (extra or []),
        "segments": [
            {
                "name": SEGMENT_NAME,
                "description": None,
                "environment": TARGETED_ENV,
                "constraints": [aurora_constraint(c) for c in unleash_segment_constraints()],
                "version": 1,
            }
        ],
    }


# --- HTTP ---------------------------------------------------------------------------------------


class HTTPFailure(Exception):
    def __init__(self, status: int, url: str, body: str) -> None:
        super().__init__(f"{status} from {url}: {body[:300]}")
        self.status = status
        self.path = urllib.parse.urlsplit(url).path


def call(
    method: str, url: str, headers: dict[str, str], body: object | None = None
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raise HTTPFailure(error.code, url, error.read().decode(errors="replace")) from None


def poll(what: str, probe: Any, deadline: float = DEADLINE) -> Any:
    """Call probe() until it returns something truthy; give up after `deadline` seconds."""
    end = time.monotonic() + deadline
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > end:
            raise SystemExit(f"bench: {what} not ready after {deadline:.0f} s")
        time.sleep(0.25)


# --- unleash-seed -------------------------------------------------------------------------------


def frontend_toggles(url: str, token: str, query: str) -> dict[str, Any]:
    _, body = call("GET", f"{url}/api/frontend?{query}", {"Authorization": token})
    return {toggle["name"]: toggle for toggle in body["toggles"]}


def unleash_seed(args: argparse.Namespace) -> None:
    admin = {"Authorization": args.admin_token}
    api = f"{args.url}/api/admin"
    _, segment = call(
        "POST",
        f"{api}/segments",
        admin,
        {"name": SEGMENT_NAME, "constraints": unleash_segment_constraints()},
    )
    features = f"{api}/projects/default/features"
    for key in KEYS:
        call("POST", features, admin, {"name": key, "type": "release"})
        plain = {
            "name": "flexibleRollout",
            "parameters": {"rollout": "100", "stickiness": "default", "groupId": key},
        }
        call("POST", f"{features}/{key}/environments/{UNLEASH_PLAIN_ENV}/strategies", admin, plain)
        call(
            "POST",
            f"{features}/{key}/environments/{UNLEASH_TARGETED_ENV}/strategies",
            admin,
            unleash_strategy(key, segment["id"]),
        )
    for env in (UNLEASH_PLAIN_ENV, UNLEASH_TARGETED_ENV):
        call(
            "POST",
            f"{api}/projects/default/bulk_features/environments/{env}/on",
            admin,
            {"features": KEYS},
        )
    # The frontend API answers from a cache that a revision event refreshes: wait for all flags.
    for token, query in (
        (args.plain_token, "userId=123"),
        (args.targeted_token, UNLEASH_QUERY),
    ):
        poll(
            "Unleash's frontend API",
            lambda token=token, query=query: len(frontend_toggles(args.url, token, query)) == FLAGS,
        )
    # The client features document with segments apart (a client that declares spec 5 support).
    _, document = call(
        "GET",
        f"{args.url}/api/client/features",
        {"Authorization": args.client_token, "Unleash-Client-Spec": "5.0.0"},
    )
    if len(document["features"]) != FLAGS or len(document.get("segments", [])) != 1:
        raise SystemExit(f"bench: Unleash's client document is not the seeded state: {document}")
    Path(args.document).write_text(json.dumps(document))
    print(json.dumps({"flags": FLAGS, "segments": 1, "revision": document.get("meta")}))


# --- aurora-seed --------------------------------------------------------------------------------


def aurora_seed(args: argparse.Namespace) -> None:
    auth = {"Authorization": f"Bearer {args.token}"}
    api = f"{args.url}/api/v1"
    for key in KEYS:
        call(
            "POST",
            f"{api}/feature-flags/",
            auth,
            {
                "flag_key": key,
                "is_enabled": True,
                "rollout_percentage": 100,
                "environment": PLAIN_ENV,
            },
        )

    def bulk(env: str, query: str) -> dict[str, Any]:
        _, body = call("GET", f"{api}/feature-flags/bulk?environment={env}&{query}", auth)
        return dict(body)

    poll("Aurora's plain flags", lambda: len(bulk(PLAIN_ENV, "user_id=123")) == FLAGS)
    status: dict[str, Any] = {"plain": FLAGS}
    document = json.loads(Path(args.document).read_text())
    try:
        call(
            "POST",
            f"{api}/import/unleash?environment={TARGETED_ENV}&dry_run=false",
            auth,
            document,
        )
        status["targeted_via"] = "POST /api/v1/import/unleash (Unleash's client features document)"
    except HTTPFailure as failure:
        if failure.status not in {404, 405}:
            raise
        # No import on this branch: the same flags written natively (docs/TARGETING.md).
        try:
            native_targeted(api, auth)
        except HTTPFailure as native:
            if native.status not in {404, 405, 422}:
                raise
            status["targeted"] = (
                "not measured: neither POST /api/v1/import/unleash nor native targeting writes "
                f"are on this branch (POST {native.path} answered {native.status})"
            )
        else:
            status["targeted_via"] = "native writes (POST /segments, POST /feature-flags/)"
    if "targeted" not in status:
        poll(
            "Aurora's targeted flags",
            lambda: len(bulk(TARGETED_ENV, "user_id=123")) == FLAGS,
        )
        status["targeted"] = FLAGS
    Path(args.status).write_text(json.dumps(status))
    print(json.dumps(status))


def native_targeted(api: str, auth: dict[str, str]) -> None:
    state = aurora_state()
    for segment in state["segments"]:
        call(
            "POST",
            f"{api}/segments/",
            auth,
            {k: segment[k] for k in ("name", "description", "environment", "constraints")},
        )
    for flag in state["flags"]:
        body = {k: v for k, v in flag.items() if k != "version"}
        _, written = call("POST", f"{api}/feature-flags/", auth, body)
        if not written.get("rules"):  # a server that ignores the field wrote a plain flag
            raise HTTPFailure(
                422, f"{api}/feature-flags/", "the flag was written without its rules"
            )


# --- compare ------------------------------------------------------------------------------------


def compare(args: argparse.Namespace) -> None:
    """Both servers must answer alike for the benchmark's context, or the comparison is void:
    per flag, enabled and variant from POST /evaluate, enabled from the bulk GET."""
    seeded = json.loads(Path(args.status).read_text()).get("targeted")
    if seeded != FLAGS:
        print(json.dumps({"flags": FLAGS, "skipped": f"not compared: {seeded}"}))
        return
    unleash = frontend_toggles(args.unleash_url, args.targeted_token, UNLEASH_QUERY)
    expected = {
        key: (key in unleash, unleash[key]["variant"]["name"] if key in unleash else "disabled")
        for key in KEYS
    }
    auth = {"Authorization": f"Bearer {args.token}"}
    result: dict[str, Any] = {"flags": FLAGS, "unleash_enabled": len(unleash)}
    disagreements: list[dict[str, Any]] = []
    try:
        _, ours = call(
            "POST",
            f"{args.url}/api/v1/feature-flags/evaluate",
            auth,
            {"environment": TARGETED_ENV, "context": CONTEXT},
        )
    except HTTPFailure as failure:
        result["evaluate"] = f"not compared: POST /evaluate answered {failure.status}"
    else:
        for key, (enabled, variant) in expected.items():
            mine = ours["flags"].get(key)
            got = (mine["enabled"], mine["variant"]["name"]) if mine else None
            if got != (enabled, variant):
                disagreements.append(
                    {"flag": key, "via": "evaluate", "unleash": [enabled, variant], "aurora": got}
                )
        result["evaluate"] = "compared"
    try:
        _, bulk = call(
            "GET",
            f"{args.url}/api/v1/feature-flags/bulk?environment={TARGETED_ENV}&{AURORA_QUERY}",
            auth,
        )
    except HTTPFailure as failure:
        result["bulk"] = f"not compared: the bulk GET answered {failure.status}"
    else:
        for key, (enabled, _variant) in expected.items():
            if bulk.get(key) != enabled:
                disagreements.append(
                    {"flag": key, "via": "bulk", "unleash": enabled, "aurora": bulk.get(key)}
                )
        result["bulk"] = "compared"
    result["disagreements"] = len(disagreements)
    result["examples"] = disagreements[:3]
    print(json.dumps(result))


# --- body, document -----------------------------------------------------------------------------


def expect(args: argparse.Namespace) -> None:
    """Exit 1 (saying why) unless a probe's answer is what the benchmark's context must get: a
    row that measures wrong answers is not measured at all."""
    answer = json.loads(Path(args.file).read_text())
    problems = {
        "check-targeted": lambda: answer.get("enabled") is not True,
        "evaluate-post": lambda: (
            answer.get("enabled") is not True or answer["variant"]["name"] not in {"blue", "green"}
        ),
        "evaluate-all": lambda: (
            sorted(k for k, v in answer["flags"].items() if v["enabled"]) != KEYS
        ),
        "bulk-targeted": lambda: sorted(k for k, v in answer.items() if v is True) != KEYS,
        "bulk-plain": lambda: sorted(k for k, v in answer.items() if v is True) != KEYS,
        "unleash-targeted": lambda: sorted(t["name"] for t in answer["toggles"]) != KEYS,
        "unleash-plain": lambda: sorted(t["name"] for t in answer["toggles"]) != KEYS,
    }
    if args.name in problems and problems[args.name]():
        print(
            f"not measured: a wrong answer for the benchmark's context: {json.dumps(answer)[:100]}"
        )
        raise SystemExit(1)


def body(_args: argparse.Namespace) -> None:
    print(json.dumps({"environment": TARGETED_ENV, "context": CONTEXT}, separators=(",", ":")))


def document(_args: argparse.Namespace) -> None:
    print(json.dumps(unleash_document()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    seed = commands.add_parser("unleash-seed")
    seed.add_argument("--url", required=True)
    for name in ("admin-token", "plain-token", "targeted-token", "client-token", "document"):
        seed.add_argument(f"--{name}", required=True)
    ours = commands.add_parser("aurora-seed")
    for name in ("url", "token", "document", "status"):
        ours.add_argument(f"--{name}", required=True)
    both = commands.add_parser("compare")
    for name in ("url", "token", "unleash-url", "targeted-token", "status"):
        both.add_argument(f"--{name}", required=True)
    check = commands.add_parser("expect")
    check.add_argument("name")
    check.add_argument("file")
    commands.add_parser("body")
    commands.add_parser("document")
    args = parser.parse_args()
    handlers = {"unleash-seed": unleash_seed, "aurora-seed": aurora_seed, "compare": compare}
    handlers |= {"body": body, "document": document, "expect": expect}
    handlers[args.command](args)


if __name__ == "__main__":
    main()
