"""API token use cases: create (the token is returned once), list, revoke, look up by hash."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from database.models import ApiToken, utcnow
from database.uow import UnitOfWork
from service.errors import AlreadyExists, InvalidInput, NotFound
from service.principal import RESERVED_ACTORS

__all__ = ["ApiToken", "Issued", "Known", "create", "hash_token", "known", "list_all", "revoke"]

TOKEN_PREFIX = "aur_"  # noqa: S105 - a marker, not a secret


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class Issued:
    token: ApiToken
    secret: str  # shown once


NAME_PATTERN = r"^[A-Za-z0-9._-]+$"  # the API documents these two (service/routers/tokens.py)
NAME_LENGTH = 100


def check_name(name: str) -> None:
    """A token's name is the actor in history: plain, and never one the service uses itself."""
    if len(name) > NAME_LENGTH or not re.fullmatch(NAME_PATTERN, name):
        raise InvalidInput(
            f"a token name is 1 to 100 letters, digits and . _ -, not {name[:120]!r}"
        )
    if name in RESERVED_ACTORS:
        raise InvalidInput(f"{name!r} is reserved: the service records it as an actor itself")


def create(uow: UnitOfWork, *, name: str, scopes: frozenset[str], actor: str) -> Issued:
    check_name(name)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)  # 256 bits
    with uow:
        if uow.tokens.by_name(name) is not None:
            raise AlreadyExists(f"a token named {name!r} exists")
        token = ApiToken(
            name=name,
            token_hash=hash_token(secret),
            scopes=sorted(scopes),
            created_at=utcnow(),
            created_by=actor,
            revoked_at=None,
        )
        try:
            uow.tokens.add(token)
            uow.commit()
        except IntegrityError as exc:
            raise AlreadyExists(f"a token named {name!r} exists") from exc
        return Issued(token, secret)


def list_all(uow: UnitOfWork) -> Sequence[ApiToken]:
    with uow:
        return uow.tokens.all()


def revoke(uow: UnitOfWork, name: str) -> ApiToken:
    with uow:
        token = uow.tokens.by_name(name)
        if token is None:
            raise NotFound(f"no token named {name!r}")
        if token.revoked_at is None:
            token.revoked_at = utcnow()
            uow.commit()
        return token


@dataclass(frozen=True, slots=True)
class Known:
    """Every token as authentication holds it: the active ones, and the hashes of the revoked
    ones (re-seeded into Redis's record of revocations when Redis lost it, cache/tokens.py)."""

    active: dict[str, tuple[str, list[str]]]  # hash -> (name, scopes)
    revoked: frozenset[str]


def known(uow: UnitOfWork) -> Known:
    """One query. Tokens are few (one per service or person), so authentication holds them all
    and never asks the database per request."""
    with uow:
        everything = uow.tokens.all()
        return Known(
            active={
                t.token_hash: (t.name, list(t.scopes)) for t in everything if t.revoked_at is None
            },
            revoked=frozenset(t.token_hash for t in everything if t.revoked_at is not None),
        )
