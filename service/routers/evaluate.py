"""Flag evaluation for a full context: `POST /api/v1/feature-flags/evaluate[/{key}]`.

Evaluation has a scope of its own, `evaluate:<env>`, which reads nothing else (see
service/principal.py); these routes take it, and read and write scopes too, as do the GET
check, evaluate and bulk routes in service/routers/flags.py. `explain` reveals rules and segment
contents, so it needs a read scope. A POST here is a question, not a change: EvaluateFirstRoute,
not ScopeFirstRoute, checks the scope before the body is read.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Response

from service.deps import (
    EvaluateFirstRoute,
    FlagKeyPath,
    PrincipalDep,
    ReadsDep,
    RulesDep,
    SettingsDep,
)
from service.routers import API_PREFIX
from service.targeting.requests import (
    AllResultsOut,
    EvaluateIn,
    FlagResultOut,
    result_json,
)

router = APIRouter(
    prefix=f"{API_PREFIX}/feature-flags", tags=["evaluation"], route_class=EvaluateFirstRoute
)


def _json(body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


@router.post(
    "/evaluate/{key:path}",
    response_model=FlagResultOut,
    responses={413: {"description": "The context is over AURORA_MAX_CONTEXT_BYTES"}},
)
async def evaluate_for_context(
    key: FlagKeyPath,
    body: EvaluateIn,
    reads: ReadsDep,
    rules: RulesDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    explain: Annotated[
        bool, Query(description="Say per rule and constraint why (needs a read scope)")
    ] = False,
) -> Response:
    """One flag for one context: enabled, variant and why."""
    env = rules.environment(body.environment)
    principal.require_evaluate(env)
    if explain:
        principal.require_read(env)  # explain shows rules and segment contents
    context = body.context.to_context(settings.max_context_bytes)
    item, result = await reads.evaluate_context(env, key, context)
    answer = {"flag_key": key, "environment": env, **result_json(item, result)}
    if explain:
        answer["explain"] = await reads.explain(env, key, context)
    return _json(answer)


@router.post(
    "/evaluate",
    response_model=AllResultsOut,
    responses={413: {"description": "The context is over AURORA_MAX_CONTEXT_BYTES"}},
)
async def evaluate_all(
    body: EvaluateIn,
    reads: ReadsDep,
    rules: RulesDep,
    settings: SettingsDep,
    principal: PrincipalDep,
) -> Response:
    """Every flag of an environment for one context: what a front end or a gateway asks."""
    env = rules.environment(body.environment)
    principal.require_evaluate(env)
    context = body.context.to_context(settings.max_context_bytes)
    results = await reads.evaluate_all(env, context)
    flags = {key: result_json(item, result) for key, (item, result) in results.items()}
    return _json({"environment": env, "flags": flags})
