"""`/api/v1/configurations`."""

from __future__ import annotations

from typing import Annotated

from aurora_client.state import JsonValue
from fastapi import APIRouter, Depends, Path, Query, Response, status

from service.deps import (
    EnvQuery,
    IfMatchDep,
    KeyPath,
    PrincipalDep,
    ReadableEnv,
    ReadableFilter,
    ReadsDep,
    RulesDep,
    ScopeFirstRoute,
    ServiceQuery,
    StoreDep,
    WritesDep,
    documented_query_only,
    mark_propagation,
)
from service.etag import format_etag
from service.routers import API_PREFIX
from service.routers.responses import WRITTEN, Limit, Offset, shown
from service.schemas import (
    ConfigCreate,
    ConfigOut,
    ConfigUpdate,
    ConfigValueSet,
    HistoryOut,
    PageOut,
    ValueOut,
)
from service.usecases import configs

router = APIRouter(
    prefix=f"{API_PREFIX}/configurations",
    tags=["configurations"],
    dependencies=[Depends(documented_query_only)],
    route_class=ScopeFirstRoute,  # a write's scope before its input (issue 9)
)

Id = Annotated[int, Path(ge=1, le=2**63 - 1, description="configuration id")]


@router.post(
    "/", status_code=status.HTTP_201_CREATED, response_model=ConfigOut, responses={201: WRITTEN}
)
async def create_configuration(
    body: ConfigCreate, writes: WritesDep, rules: RulesDep, actor: PrincipalDep, response: Response
) -> ConfigOut:
    written = await writes.write(
        configs.create,
        env=rules.environment(body.environment),
        service=body.service_name,
        key=body.config_key,
        value=rules.value(body.config_value),
        description=body.description,
        actor=actor,
    )
    return shown(response, ConfigOut.of(written.value), written)


@router.get("/", response_model=PageOut[ConfigOut])
async def list_configurations(
    store: StoreDep,
    environments: ReadableFilter,
    service: ServiceQuery,
    key_prefix: Annotated[str | None, Query(max_length=200)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> PageOut[ConfigOut]:
    page = await store.run(
        configs.list_page,
        environments=environments,
        service=service,
        key_prefix=key_prefix,
        limit=limit,
        offset=offset,
    )
    return PageOut(
        items=[ConfigOut.of(c) for c in page.items], total=page.total, limit=limit, offset=offset
    )


@router.get("/bulk", response_model=dict[str, JsonValue])
async def bulk_values(
    reads: ReadsDep, env: ReadableEnv, service: ServiceQuery
) -> dict[str, JsonValue]:
    """Every key visible to the service as a flat object; its own values override globals."""
    return await reads.bulk_configs(env, service)


@router.get("/key/{key:path}", response_model=ConfigOut)
async def get_by_key(
    key: KeyPath, reads: ReadsDep, env: ReadableEnv, service: ServiceQuery, response: Response
) -> ConfigOut:
    """The configuration stored in exactly this scope (no fallback to the global)."""
    return shown(response, ConfigOut.of(await reads.config(env, service, key)))


@router.put("/key/{key:path}", response_model=ConfigOut, responses={200: WRITTEN, 201: WRITTEN})
async def set_value(
    key: KeyPath,
    body: ConfigValueSet,
    writes: WritesDep,
    rules: RulesDep,
    env: EnvQuery,
    service: ServiceQuery,
    actor: PrincipalDep,
    if_match: IfMatchDep,
    response: Response,
) -> ConfigOut:
    """Set this scope's value, creating it if needed (201) or updating it (200)."""
    written = await writes.write(
        configs.set_value,
        env=env,
        service=service,
        key=key,
        value=rules.value(body.value),
        description=body.description,
        if_match=if_match,
        actor=actor,
    )
    if written.value.created:
        response.status_code = status.HTTP_201_CREATED
    return shown(response, ConfigOut.of(written.value.config), written)


@router.get("/value/{key:path}", response_model=ValueOut)
async def get_value(
    key: KeyPath, reads: ReadsDep, env: ReadableEnv, service: ServiceQuery, response: Response
) -> ValueOut:
    """The value the service sees: its own if set, else the environment's global."""
    resolved = await reads.resolve(env, service, key)
    response.headers["ETag"] = format_etag(resolved.config.version)
    return ValueOut(
        key=key,
        value=resolved.config.value,
        environment=env,
        service_name=service,
        scope=resolved.scope,
        version=resolved.config.version,
    )


@router.get("/{config_id:int}", response_model=ConfigOut)
async def get_configuration(
    config_id: Id, store: StoreDep, principal: PrincipalDep, response: Response
) -> ConfigOut:
    config = await store.run(configs.get, config_id, reader=principal)
    return shown(response, ConfigOut.of(config))


@router.put("/{config_id:int}", response_model=ConfigOut, responses={200: WRITTEN})
async def update_configuration(
    config_id: Id,
    body: ConfigUpdate,
    writes: WritesDep,
    rules: RulesDep,
    actor: PrincipalDep,
    if_match: IfMatchDep,
    response: Response,
) -> ConfigOut:
    changes = body.changes()
    if "config_value" in changes:
        rules.value(changes["config_value"])
    written = await writes.write(configs.update, config_id, changes, if_match=if_match, actor=actor)
    return shown(response, ConfigOut.of(written.value), written)


@router.delete("/{config_id:int}", status_code=status.HTTP_204_NO_CONTENT, responses={204: WRITTEN})
async def delete_configuration(
    config_id: Id, writes: WritesDep, actor: PrincipalDep, if_match: IfMatchDep, response: Response
) -> None:
    written = await writes.write(configs.delete, config_id, if_match=if_match, actor=actor)
    mark_propagation(response, written)


@router.get("/{config_id:int}/history", response_model=list[HistoryOut])
async def configuration_history(
    config_id: Id, store: StoreDep, principal: PrincipalDep
) -> list[HistoryOut]:
    """Every change, newest first; still answers after the configuration is deleted."""
    entries = await store.run(configs.history, config_id, reader=principal)
    return [HistoryOut.of(e) for e in entries]
