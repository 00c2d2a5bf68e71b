"""`/api/v1/feature-flags`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status

from service.context import PROPERTIES_PARAMETER, PropertiesQuery
from service.deps import (
    EnvQuery,
    EvaluableEnv,
    FlagKeyPath,
    IfMatchDep,
    PrincipalDep,
    ReadableEnv,
    ReadableFilter,
    ReadsDep,
    RulesDep,
    ScopeFirstRoute,
    StoreDep,
    WritesDep,
    documented_query_only,
    mark_propagation,
)
from service.routers import API_PREFIX
from service.routers.responses import WRITTEN, Limit, Offset, shown
from service.schemas import (
    USER_ID_LENGTH,
    CheckOut,
    EvaluationOut,
    FlagCreate,
    FlagOut,
    FlagUpdate,
    HistoryOut,
    PageOut,
    Percentage,
)
from service.targeting.schemas import PrerequisitesBody, RulesBody, VariantsBody
from service.usecases import flags

router = APIRouter(
    prefix=f"{API_PREFIX}/feature-flags",
    tags=["feature-flags"],
    dependencies=[Depends(documented_query_only)],
    route_class=ScopeFirstRoute,  # a write's scope before its input (issue 9)
)

Id = Annotated[int, Path(ge=1, le=2**63 - 1, description="feature flag id")]
UserId = Annotated[
    str | None,
    Query(
        min_length=1, max_length=USER_ID_LENGTH, description="Without it, only a 100% rollout is on"
    ),
]


@router.post(
    "/", status_code=status.HTTP_201_CREATED, response_model=FlagOut, responses={201: WRITTEN}
)
async def create_flag(
    body: FlagCreate, writes: WritesDep, rules: RulesDep, actor: PrincipalDep, response: Response
) -> FlagOut:
    written = await writes.write(
        flags.create,
        env=rules.environment(body.environment),
        key=body.flag_key,
        name=body.flag_name or body.flag_key,
        description=body.description,
        is_enabled=body.is_enabled,
        rollout_percentage=body.rollout_percentage,
        actor=actor,
        targeting=body.targeting(),
        limits=rules.limits,
    )
    return shown(response, FlagOut.of(written.value), written)


@router.get("/", response_model=PageOut[FlagOut])
async def list_flags(
    store: StoreDep,
    environments: ReadableFilter,
    key_prefix: Annotated[str | None, Query(max_length=200)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> PageOut[FlagOut]:
    page = await store.run(
        flags.list_page,
        environments=environments,
        key_prefix=key_prefix,
        limit=limit,
        offset=offset,
    )
    return PageOut(
        items=[FlagOut.of(f) for f in page.items], total=page.total, limit=limit, offset=offset
    )


@router.get("/bulk", response_model=dict[str, bool], openapi_extra=PROPERTIES_PARAMETER)
async def bulk_flags(
    reads: ReadsDep, env: EvaluableEnv, properties: PropertiesQuery, user_id: UserId = None
) -> dict[str, bool]:
    """Every flag of the environment, evaluated for the user when one is given."""
    return await reads.bulk_flags(env, user_id, properties)


@router.get("/key/{key:path}", response_model=FlagOut)
async def get_flag_by_key(
    key: FlagKeyPath, reads: ReadsDep, env: ReadableEnv, response: Response
) -> FlagOut:
    return shown(response, FlagOut.of(await reads.flag(env, key)))


@router.get(
    "/evaluate/{key:path}", response_model=EvaluationOut, openapi_extra=PROPERTIES_PARAMETER
)
async def evaluate_flag(
    key: FlagKeyPath,
    reads: ReadsDep,
    env: EvaluableEnv,
    properties: PropertiesQuery,
    user_id: UserId = None,
) -> EvaluationOut:
    """Today's reasons; a targeted flag's are mapped onto them (docs/TARGETING.md)."""
    found = await reads.evaluate(env, key, user_id, properties)
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


@router.get("/check/{key:path}", response_model=CheckOut, openapi_extra=PROPERTIES_PARAMETER)
async def check_flag(
    key: FlagKeyPath,
    reads: ReadsDep,
    env: EvaluableEnv,
    properties: PropertiesQuery,
    user_id: UserId = None,
) -> CheckOut:
    return CheckOut(enabled=await reads.check(env, key, user_id, properties))


@router.put("/toggle/{key:path}", response_model=FlagOut, responses={200: WRITTEN})
async def toggle_flag(
    key: FlagKeyPath,
    writes: WritesDep,
    env: EnvQuery,
    actor: PrincipalDep,
    if_match: IfMatchDep,
    response: Response,
    enabled: Annotated[
        bool | None, Query(description="Set to this state instead of flipping (idempotent)")
    ] = None,
) -> FlagOut:
    written = await writes.write(
        flags.toggle, env, key, enabled=enabled, if_match=if_match, actor=actor
    )
    return shown(response, FlagOut.of(written.value), written)


@router.put("/rollout/{key:path}", response_model=FlagOut, responses={200: WRITTEN})
async def set_rollout(
    key: FlagKeyPath,
    percentage: Annotated[Percentage, Query(description="0..100")],
    writes: WritesDep,
    env: EnvQuery,
    actor: PrincipalDep,
    if_match: IfMatchDep,
    response: Response,
) -> FlagOut:
    written = await writes.write(
        flags.set_rollout, env, key, percentage, if_match=if_match, actor=actor
    )
    return shown(response, FlagOut.of(written.value), written)


@router.put("/rules/{key:path}", response_model=FlagOut, responses={200: WRITTEN})
async def set_rules(
    key: FlagKeyPath,
    body: RulesBody,
    writes: WritesDep,
    rules: RulesDep,
    env: EnvQuery,
    actor: PrincipalDep,
    if_match: IfMatchDep,
    response: Response,
) -> FlagOut:
    """Replace the flag's rules as a whole (ids are assigned to rules sent without one)."""
    written = await writes.write(
        flags.replace,
        env,
        key,
        "rules",
        body.stored(),
        if_match=if_match,
        actor=actor,
        limits=rules.limits,
    )
    return shown(response, FlagOut.of(written.value), written)


@router.put("/variants/{key:path}", response_model=FlagOut, responses={200: WRITTEN})
async def set_variants(
    key: FlagKeyPath,
    body: VariantsBody,
    writes: WritesDep,
    env: EnvQuery,
    actor: PrincipalDep,
    if_match: IfMatchDep,
    response: Response,
) -> FlagOut:
    """Replace the flag's variants as a whole."""
    written = await writes.write(
        flags.replace, env, key, "variants", body.stored(), if_match=if_match, actor=actor
    )
    return shown(response, FlagOut.of(written.value), written)


@router.put("/prerequisites/{key:path}", response_model=FlagOut, responses={200: WRITTEN})
async def set_prerequisites(
    key: FlagKeyPath,
    body: PrerequisitesBody,
    writes: WritesDep,
    env: EnvQuery,
    actor: PrincipalDep,
    if_match: IfMatchDep,
    response: Response,
) -> FlagOut:
    """Replace the flag's prerequisites (parent flags of the same environment) as a whole."""
    written = await writes.write(
        flags.replace, env, key, "prerequisites", body.stored(), if_match=if_match, actor=actor
    )
    return shown(response, FlagOut.of(written.value), written)


@router.get("/{flag_id:int}", response_model=FlagOut)
async def get_flag(
    flag_id: Id, store: StoreDep, principal: PrincipalDep, response: Response
) -> FlagOut:
    flag = await store.run(flags.get, flag_id, reader=principal)
    return shown(response, FlagOut.of(flag))


@router.put("/{flag_id:int}", response_model=FlagOut, responses={200: WRITTEN})
async def update_flag(
    flag_id: Id,
    body: FlagUpdate,
    writes: WritesDep,
    rules: RulesDep,
    actor: PrincipalDep,
    if_match: IfMatchDep,
    response: Response,
) -> FlagOut:
    written = await writes.write(
        flags.update, flag_id, body.changes(), if_match=if_match, actor=actor, limits=rules.limits
    )
    return shown(response, FlagOut.of(written.value), written)


@router.delete("/{flag_id:int}", status_code=status.HTTP_204_NO_CONTENT, responses={204: WRITTEN})
async def delete_flag(
    flag_id: Id, writes: WritesDep, actor: PrincipalDep, if_match: IfMatchDep, response: Response
) -> None:
    written = await writes.write(flags.delete, flag_id, if_match=if_match, actor=actor)
    mark_propagation(response, written)


@router.get("/{flag_id:int}/history", response_model=list[HistoryOut])
async def flag_history(flag_id: Id, store: StoreDep, principal: PrincipalDep) -> list[HistoryOut]:
    """Every change, newest first; still answers after the flag is deleted."""
    entries = await store.run(flags.history, flag_id, reader=principal)
    return [HistoryOut.of(e) for e in entries]
