"""`/api/v1/import`: bring another service's flags in (issue 10: Unleash)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from service.deps import (
    EnvQuery,
    PrincipalDep,
    RulesDep,
    ScopeFirstRoute,
    WritesDep,
    documented_query_only,
    mark_propagation,
)
from service.routers import API_PREFIX
from service.usecases import imports

router = APIRouter(
    prefix=f"{API_PREFIX}/import",
    tags=["import"],
    dependencies=[Depends(documented_query_only)],
    route_class=ScopeFirstRoute,  # write:<env> before the document is read
)


class UnleashDocument(BaseModel):
    """What Unleash's `GET /api/client/features` answers. Fields this import does not use (`query`,
    `meta`...) are ignored, as Unleash's own SDKs ignore them."""

    model_config = ConfigDict(extra="ignore", strict=True)
    version: int = Field(description="The document's format version (Unleash sends 1 or 2)")
    features: list[dict[str, Any]]
    segments: list[dict[str, Any]] = Field(default_factory=list)


class ImportedItem(BaseModel):
    kind: str = Field(description="flag or segment")
    key: str
    version: int = Field(description="Its version after the import (would be, in a dry run)")


class ImportOut(BaseModel):
    environment: str
    dry_run: bool
    created: list[ImportedItem]
    changed: list[ImportedItem]
    unchanged: list[ImportedItem]
    warnings: list[str] = Field(
        description="What Unleash treats as never matching, kept as it is: constraints with an "
        "unknown operator or an unparsable value, prerequisites on a missing parent, cycles"
    )


@router.post(
    "/unleash",
    response_model=ImportOut,
    responses={422: {"description": "A custom strategy, a name our keys cannot carry, a limit"}},
)
async def import_unleash(
    document: UnleashDocument,
    writes: WritesDep,
    rules: RulesDep,
    env: EnvQuery,
    actor: PrincipalDep,
    response: Response,
    dry_run: Annotated[bool, Query(description="Say what would change; change nothing")] = False,
) -> ImportOut:
    """Import Unleash's client features document into one environment, all or nothing: every
    built-in strategy, constraints, segments, strategy and flag variants, dependencies."""
    written = await writes.write(
        imports.import_unleash,
        env,
        document.model_dump(),
        dry_run=dry_run,
        actor=actor,
        limits=rules.limits,
        max_segments=rules.max_segments,
    )
    mark_propagation(response, written)
    return ImportOut.model_validate(written.value, from_attributes=True)
