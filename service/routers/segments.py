"""`/api/v1/segments`: named constraint sets per environment, referenced by flags' rules."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response, status

from service.deps import (
    EnvQuery,
    IfMatchDep,
    PrincipalDep,
    ReadableEnv,
    ReadableFilter,
    RulesDep,
    ScopeFirstRoute,
    SegmentNamePath,
    StoreDep,
    WritesDep,
    documented_query_only,
    mark_propagation,
)
from service.routers import API_PREFIX
from service.routers.responses import WRITTEN, Limit, Offset, shown
from service.schemas import HistoryOut, PageOut
from service.targeting.schemas import (
    SegmentCreate,
    SegmentOut,
    SegmentUpdate,
    constraints_json,
)
from service.usecases import segments

router = APIRouter(
    prefix=f"{API_PREFIX}/segments",
    tags=["segments"],
    dependencies=[Depends(documented_query_only)],
    route_class=ScopeFirstRoute,  # a write's scope before its input (issue 9)
)


@router.post(
    "/", status_code=status.HTTP_201_CREATED, response_model=SegmentOut, responses={201: WRITTEN}
)
async def create_segment(
    body: SegmentCreate, writes: WritesDep, rules: RulesDep, actor: PrincipalDep, response: Response
) -> SegmentOut:
    written = await writes.write(
        segments.create,
        env=rules.environment(body.environment),
        name=body.name,
        description=body.description,
        constraints=constraints_json(body.constraints),
        actor=actor,
        limits=rules.limits,
        max_segments=rules.max_segments,
    )
    return shown(response, SegmentOut.of(written.value), written)


@router.get("/", response_model=PageOut[SegmentOut])
async def list_segments(
    store: StoreDep, environments: ReadableFilter, limit: Limit = 100, offset: Offset = 0
) -> PageOut[SegmentOut]:
    page = await store.run(
        segments.list_page, environments=environments, limit=limit, offset=offset
    )
    return PageOut(
        items=[SegmentOut.of(s) for s in page.items], total=page.total, limit=limit, offset=offset
    )


@router.get("/{name}/history", response_model=list[HistoryOut])
async def segment_history(
    name: SegmentNamePath, store: StoreDep, env: ReadableEnv
) -> list[HistoryOut]:
    """Every change of the name in the environment, newest first; still answers after a delete."""
    return [HistoryOut.of(e) for e in await store.run(segments.history, env, name)]


@router.get("/{name}", response_model=SegmentOut)
async def get_segment(
    name: SegmentNamePath, store: StoreDep, env: ReadableEnv, response: Response
) -> SegmentOut:
    return shown(response, SegmentOut.of(await store.run(segments.get, env, name)))


@router.put("/{name}", response_model=SegmentOut, responses={200: WRITTEN})
async def update_segment(
    name: SegmentNamePath,
    body: SegmentUpdate,
    writes: WritesDep,
    rules: RulesDep,
    env: EnvQuery,
    actor: PrincipalDep,
    if_match: IfMatchDep,
    response: Response,
) -> SegmentOut:
    """Change the description and/or the constraints; every flag naming it follows at once."""
    written = await writes.write(
        segments.update,
        env,
        name,
        body.changes(),
        if_match=if_match,
        actor=actor,
        limits=rules.limits,
    )
    return shown(response, SegmentOut.of(written.value), written)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT, responses={204: WRITTEN})
async def delete_segment(
    name: SegmentNamePath,
    writes: WritesDep,
    env: EnvQuery,
    actor: PrincipalDep,
    if_match: IfMatchDep,
    response: Response,
) -> None:
    """Refused with 409, listing them, while flags' rules name the segment."""
    written = await writes.write(segments.delete, env, name, if_match=if_match, actor=actor)
    mark_propagation(response, written)
