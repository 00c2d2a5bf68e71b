"""Flag evaluation for a context: `/api/v1/feature-flags/evaluate`, `/check`, `/bulk`.

Evaluation has a scope of its own, `evaluate:<env>`, which reads nothing else (see
service/principal.py); every route here takes it, and read and write scopes too. `explain`
reveals rules and segment contents, so it needs a read scope.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Response

from service.deps import (
    EvaluateFirstRoute,
    EvaluableEnv,
    KeyPath,
    PrincipalDep,
    ReadsDep,
    RulesDep,
    SettingsDep,
    context_query,
)
from service.routers import API_PREFIX
from service.schemas import USER_ID_LENGTH, CheckOut, EvaluationOut
from service.targeting.requests import (
    AllResultsOut,
    EvaluateIn,
    FlagResultOut,
    result_json,
)

router = APIRouter(
    prefix=f"{API_PREFIX}/feature-flags", tags=["evaluation"], route_class=EvaluateFirstRoute
)

UserId = Annotated[
    str | None,
    Query(
        min_length=1, max_length=USER_ID_LENGTH, description="Without it, only a 100% rollout is on"
    ),
]
ContextQuery = Annotated[Any, Depends(context_query)]
PROPERTIES = (
    "Context properties as `properties[NAME]=VALUE` query parameters, as Unleash's frontend "
    "API takes them."
)


def _json(body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


@router.post(
    "/evaluate/{key:path}",
    response_model=FlagResultOut,
    responses={413: {"description": "The context is over AURORA_MAX_CONTEXT_BYTES"}},
)
async def evaluate_for_context(
    key: KeyPath,
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


@router.get("/bulk", response_model=dict[str, bool], description=PROPERTIES)
async def bulk_flags(reads: ReadsDep, env: EvaluableEnv, context: ContextQuery) -> dict[str, bool]:
    """Every flag of the environment, on or off for the user (and properties) given."""
    return {key: result.enabled for key, (_, result) in (await reads.evaluate_all(env, context)).items()}


@router.get("/evaluate/{key:path}", response_model=EvaluationOut, description=PROPERTIES)
async def evaluate_flag(
    key: KeyPath, reads: ReadsDep, env: EvaluableEnv, context: ContextQuery, user_id: UserId = None
) -> EvaluationOut:
    """Today's answer and reasons (FULL_ROLLOUT, NO_USER, ROLLOUT_IN, ROLLOUT_OUT, DISABLED;
    docs/TARGETING.md maps a targeted flag's reasons onto them)."""
    found = await reads.evaluate(env, key, user_id, context)
    return EvaluationOut(
        flag_key=key,
        environment=env,
        user_id=user_id,
        enabled=found.result.enabled,
        reason=found.result.reason,
        bucket=found.result.bucket,
        rollout_percentage=found.flag.rollout_percentage,
        version=found.flag.version,
    )


@router.get("/check/{key:path}", response_model=CheckOut, description=PROPERTIES)
async def check_flag(
    key: KeyPath, reads: ReadsDep, env: EvaluableEnv, context: ContextQuery, user_id: UserId = None
) -> CheckOut:
    return CheckOut(enabled=(await reads.evaluate(env, key, user_id, context)).result.enabled)

