"""`/api/v1/tokens`: API tokens (admin scope). A token is shown once, when it is created."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, status
from pydantic import BaseModel, Field

from service.deps import PrincipalDep, RulesDep, StoreDep, documented_query_only
from service.principal import parse_scopes
from service.routers import API_PREFIX
from service.schemas import Body, Timestamp
from service.usecases import tokens

router = APIRouter(
    prefix=f"{API_PREFIX}/tokens", tags=["tokens"], dependencies=[Depends(documented_query_only)]
)

TokenName = Annotated[
    str, Path(min_length=1, max_length=tokens.NAME_LENGTH, pattern=tokens.NAME_PATTERN)
]


class TokenCreate(Body):
    name: str = Field(min_length=1, max_length=tokens.NAME_LENGTH, pattern=tokens.NAME_PATTERN)
    scopes: list[str] = Field(
        min_length=1, max_length=20, description="admin, read, read:<env>, write:<env>"
    )


class TokenOut(BaseModel):
    name: str
    scopes: list[str]
    created_at: Timestamp
    created_by: str
    revoked_at: Timestamp | None


class TokenIssued(TokenOut):
    token: str = Field(description="The secret: shown only now; only its hash is stored")


def _out(token: tokens.ApiToken) -> TokenOut:
    return TokenOut(
        name=token.name,
        scopes=list(token.scopes),
        created_at=token.created_at,
        created_by=token.created_by,
        revoked_at=token.revoked_at,
    )


@router.post("/", status_code=status.HTTP_201_CREATED, response_model=TokenIssued)
async def create_token(
    body: TokenCreate, request: Request, store: StoreDep, rules: RulesDep, principal: PrincipalDep
) -> TokenIssued:
    principal.require_admin()
    scopes = parse_scopes(body.scopes, rules.environments)
    issued = await store.run(tokens.create, name=body.name, scopes=scopes, actor=principal.name)
    await request.app.state.auth.created()  # usable here at once, the others told to reload
    return TokenIssued(**_out(issued.token).model_dump(), token=issued.secret)


@router.get("/", response_model=list[TokenOut])
async def list_tokens(store: StoreDep, principal: PrincipalDep) -> list[TokenOut]:
    principal.require_admin()
    return [_out(t) for t in await store.run(tokens.list_all)]


@router.delete("/{name}", response_model=TokenOut)
async def revoke_token(
    name: TokenName, request: Request, store: StoreDep, principal: PrincipalDep
) -> TokenOut:
    """Revoke: refused at once on this instance and, through Redis, on the others; within
    AURORA_TOKEN_CACHE_SECONDS on every instance if Redis cannot tell them. Its open streams
    are closed."""
    principal.require_admin()
    token = await store.run(tokens.revoke, name)
    await request.app.state.auth.revoked(token.token_hash)  # here at once, whatever follows
    return _out(token)
