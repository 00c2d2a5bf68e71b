"""`/api/v1/configurations`."""

from __future__ import annotations

from typing import Annotated

from aurora_client.state import JsonValue
from fastapi import APIRouter, Path, Query, Response, status

from service.deps import (
    ActorDep,
    EnvFilter,
    EnvQuery,
    IfMatchDep,
    KeyPath,
    RulesDep,
    ServiceQuery,
    StoreDep,
)
from service.etag import format_etag
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

router = APIRouter(prefix="/configurations", tags=["configurations"])

Id = Annotated[int, Path(ge=1, le=2**63 - 1, description="configuration id")]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0)]


def _tagged(response: Response, config: ConfigOut) -> ConfigOut:
    response.headers["ETag"] = format_etag(config.version)
    return config


@router.post("/", status_code=status.HTTP_201_CREATED, response_model=ConfigOut)
async def create_configuration(
    body: ConfigCreate, store: StoreDep, rules: RulesDep, actor: ActorDep, response: Response
) -> ConfigOut:
    config = await store.run(
        configs.create,
        env=rules.environment(body.environment),
        service=body.service_name,
        key=body.config_key,
        value=rules.value(body.config_value),
        description=body.description,
        actor=actor,
    )
    return _tagged(response, ConfigOut.of(config))


@router.get("/", response_model=PageOut[ConfigOut])
async def list_configurations(
    store: StoreDep,
    env: EnvFilter,
    service: ServiceQuery,
    key_prefix: Annotated[str | None, Query(max_length=200)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> PageOut[ConfigOut]:
    page = await store.run(
        configs.list_page,
        env=env,
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
    store: StoreDep, env: EnvQuery, service: ServiceQuery
) -> dict[str, JsonValue]:
    """Every key visible to the service as a flat object; its own values override globals."""
    return await store.run(configs.bulk, env, service)


@router.get("/key/{key:path}", response_model=ConfigOut)
async def get_by_key(
    key: KeyPath, store: StoreDep, env: EnvQuery, service: ServiceQuery, response: Response
) -> ConfigOut:
    """The configuration stored in exactly this scope (no fallback to the global)."""
    return _tagged(response, ConfigOut.of(await store.run(configs.get_by_scope, env, service, key)))


@router.put("/key/{key:path}", response_model=ConfigOut)
async def set_value(
    key: KeyPath,
    body: ConfigValueSet,
    store: StoreDep,
    rules: RulesDep,
    env: EnvQuery,
    service: ServiceQuery,
    actor: ActorDep,
    if_match: IfMatchDep,
    response: Response,
) -> ConfigOut:
    """Set this scope's value, creating it if needed (201) or updating it (200)."""
    result = await store.run(
        configs.set_value,
        env=env,
        service=service,
        key=key,
        value=rules.value(body.value),
        description=body.description,
        if_match=if_match,
        actor=actor,
    )
    if result.created:
        response.status_code = status.HTTP_201_CREATED
    return _tagged(response, ConfigOut.of(result.config))


@router.get("/value/{key:path}", response_model=ValueOut)
async def get_value(
    key: KeyPath, store: StoreDep, env: EnvQuery, service: ServiceQuery, response: Response
) -> ValueOut:
    """The value the service sees: its own if set, else the environment's global."""
    resolved = await store.run(configs.resolve, env, service, key)
    response.headers["ETag"] = format_etag(resolved.config.version)
    return ValueOut(
        key=key,
        value=resolved.config.value,
        environment=env,
        service_name=service,
        scope=resolved.scope,
        version=resolved.config.version,
    )


@router.get("/{config_id}", response_model=ConfigOut)
async def get_configuration(config_id: Id, store: StoreDep, response: Response) -> ConfigOut:
    return _tagged(response, ConfigOut.of(await store.run(configs.get, config_id)))


@router.put("/{config_id}", response_model=ConfigOut)
async def update_configuration(
    config_id: Id,
    body: ConfigUpdate,
    store: StoreDep,
    rules: RulesDep,
    actor: ActorDep,
    if_match: IfMatchDep,
    response: Response,
) -> ConfigOut:
    changes = body.changes()
    if "config_value" in changes:
        rules.value(changes["config_value"])
    config = await store.run(configs.update, config_id, changes, if_match=if_match, actor=actor)
    return _tagged(response, ConfigOut.of(config))


@router.delete("/{config_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_configuration(
    config_id: Id, store: StoreDep, actor: ActorDep, if_match: IfMatchDep
) -> None:
    await store.run(configs.delete, config_id, if_match=if_match, actor=actor)


@router.get("/{config_id}/history", response_model=list[HistoryOut])
async def configuration_history(config_id: Id, store: StoreDep) -> list[HistoryOut]:
    """Every change, newest first; still answers after the configuration is deleted."""
    return [HistoryOut.of(e) for e in await store.run(configs.history, config_id)]
