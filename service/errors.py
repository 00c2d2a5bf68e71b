"""The error tree, rendered in one place as RFC 9457 application/problem+json.

    AuroraError                    500 (never raised for bad input)
    ├── InvalidInput               422  a value the schema accepts but the rules do not
    │   ├── InvalidTargeting       422  rules, variants, prerequisites or a segment refused
    │   │                               (each problem by JSON Pointer, and the limit if one)
    │   └── LimitExceeded          422  a count over its limit (the setting is named)
    ├── Unauthenticated            401  no token, or not a valid one
    ├── Forbidden                  403  a valid token without the scope for this
    ├── NotFound                   404  no such configuration, flag or history
    ├── AlreadyExists              409  the scope or key is taken
    ├── InUse                      409  a segment that flags' rules still name
    ├── VersionMismatch            412  If-Match no longer matches the current version
    ├── PayloadTooLarge            413  a request body over AURORA_MAX_BODY_BYTES
    └── Unavailable                503  the database cannot serve the request now
        ├── CommitOutcomeUnknown   503  the connection was lost during COMMIT: maybe applied
        └── SchemaNotReady         503  the database lacks tables or columns: not migrated

Use cases raise these; `service.app` maps them (and FastAPI's validation and HTTP errors) to
problem documents. Anything else is a bug: logged once with its traceback, answered as a bare 500.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

MIGRATE_HINT = (
    "the database schema is missing or older than this version needs: "
    "run `python -m service migrate`"
)


class AuroraError(Exception):
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    slug: ClassVar[str] = "internal"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    @property
    def type(self) -> str:
        return f"urn:aurora-config:problem:{self.slug}"

    @property
    def extra(self) -> dict[str, Any]:
        """Members of the problem document beyond type, title, status, detail and instance."""
        return {}


class InvalidInput(AuroraError):
    status, title, slug = 422, "Invalid input", "invalid-input"


class Problem(Protocol):
    """One refusal of aurora_client.targeting's validation (its `Problem`)."""

    @property
    def pointer(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def limit(self) -> str | None: ...


def _location(pointer: str) -> str:
    """`/rules/0/constraints/2` as the dotted location validation errors use."""
    parts = pointer.split("/")[1:]
    return ".".join(p.replace("~1", "/").replace("~0", "~") for p in parts) or "body"


class InvalidTargeting(InvalidInput):
    """The semantics of a native write refused: `errors` lists each problem with its JSON
    Pointer into the body sent (`/rules/0/constraints/2/value`), its dotted `location` (as a
    schema error has), and the setting of the limit it exceeds, if any."""

    title, slug = "Invalid targeting", "invalid-targeting"

    def __init__(self, problems: Sequence[Problem]) -> None:
        shown = "; ".join(
            f"{p.pointer or '/'}: {p.message}" + (f" (limit {p.limit})" if p.limit else "")
            for p in problems[:5]
        )
        more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        super().__init__(shown + more)
        self.problems = list(problems)

    @property
    def extra(self) -> dict[str, Any]:
        return {
            "errors": [
                {
                    "location": _location(p.pointer),
                    "pointer": p.pointer,
                    "message": p.message,
                    **({"limit": p.limit} if p.limit else {}),
                }
                for p in self.problems
            ]
        }


class LimitExceeded(InvalidInput):
    title, slug = "Limit exceeded", "limit-exceeded"

    def __init__(self, detail: str, *, limit: str) -> None:
        super().__init__(f"{detail} ({limit})")
        self.limit = limit

    @property
    def extra(self) -> dict[str, Any]:
        return {"limit": self.limit}


class Unauthenticated(AuroraError):
    status, title, slug = 401, "Unauthenticated", "unauthenticated"


class Forbidden(AuroraError):
    status, title, slug = 403, "Forbidden", "forbidden"


class NotFound(AuroraError):
    status, title, slug = 404, "Not found", "not-found"


class AlreadyExists(AuroraError):
    status, title, slug = 409, "Already exists", "already-exists"


class InUse(AuroraError):
    status, title, slug = 409, "In use", "in-use"

    def __init__(self, detail: str, *, flags: Sequence[str]) -> None:
        super().__init__(detail)
        self.flags = list(flags)

    @property
    def extra(self) -> dict[str, Any]:
        return {"flags": self.flags}


class VersionMismatch(AuroraError):
    status, title, slug = 412, "Version mismatch", "version-mismatch"

    def __init__(self, sent: str, current: int | None) -> None:
        now = "the item does not exist" if current is None else f"current version is {current}"
        super().__init__(f"If-Match {sent} does not match: {now}; re-read and retry")
        self.current = current


class PayloadTooLarge(AuroraError):
    status, title, slug = 413, "Content too large", "content-too-large"


class Unavailable(AuroraError):
    status, title, slug = 503, "Service unavailable", "unavailable"


class CommitOutcomeUnknown(Unavailable):
    """Never "nothing was changed": the server may have committed before the connection broke.
    Not retried by the Store; the client checks, then retries only if it was not applied."""

    status, title, slug = 503, "Commit outcome unknown", "commit-outcome-unknown"

    def __init__(self) -> None:
        super().__init__(
            "the connection to the database was lost during COMMIT: the change may or may not "
            "have been applied. Check before sending it again: read the item (GET it by id or "
            "key) and compare its version with the one it had before your write: one higher, "
            "with your change, means it was applied. Sending it again with If-Match set to the "
            "version it had is safe either way (a create sent again answers 409 if it was)."
        )


class SchemaNotReady(Unavailable):
    """The database's schema is missing or older than the code: nothing works until an operator
    migrates it. A subclass of Unavailable, so every caller that survives an outage survives
    this; the readiness monitor (service/readiness.py) reports it once per state change."""

    slug = "schema-not-ready"

    def __init__(self, detail: str = MIGRATE_HINT) -> None:
        super().__init__(detail)


def _scope_text(env: str, service: str | None) -> str:
    return f"environment {env!r}, " + (f"service {service!r}" if service else "global scope")


def config_missing(env: str, service: str | None, key: str) -> NotFound:
    return NotFound(f"configuration {key!r} does not exist in {_scope_text(env, service)}")


def config_taken(env: str, service: str | None, key: str) -> AlreadyExists:
    return AlreadyExists(f"configuration {key!r} already exists in {_scope_text(env, service)}")


def value_missing(env: str, service: str | None, key: str) -> NotFound:
    where = f"service {service!r} or the global scope" if service else "the global scope"
    return NotFound(f"configuration {key!r} is not set in environment {env!r} for {where}")


def flag_missing(env: str, key: str) -> NotFound:
    return NotFound(f"feature flag {key!r} does not exist in environment {env!r}")


def segment_missing(env: str, name: str) -> NotFound:
    return NotFound(f"segment {name!r} does not exist in environment {env!r}")
