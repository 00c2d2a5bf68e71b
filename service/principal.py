"""Who is asking, and what they may do: scopes checked in one place.

Scopes: `admin` (everything, tokens included), `write:<env>` (changes in one environment, and
reads there), `read` (reads, evaluations and streams in every environment), `read:<env>` (the
same in one environment), `evaluate:<env>` (flag evaluations in one environment and nothing
else: no configuration values, no flag definitions, no segments, no history, no stream; for
browsers and gateways, which cannot keep a secret).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from service.errors import Forbidden, InvalidInput

ADMIN = "admin"
READ = "read"


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    scopes: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.scopes

    def can_write(self, environment: str) -> bool:
        return self.is_admin or f"write:{environment}" in self.scopes

    def can_read(self, environment: str | None) -> bool:
        """`None`: every environment (listing without a filter)."""
        if self.is_admin or READ in self.scopes:
            return True
        return environment is not None and (
            f"read:{environment}" in self.scopes or self.can_write(environment)
        )

    def can_evaluate(self, environment: str) -> bool:
        return f"evaluate:{environment}" in self.scopes or self.can_read(environment)

    def require_evaluate(self, environment: str) -> None:
        if not self.can_evaluate(environment):
            raise Forbidden(f"token {self.name!r} may not evaluate flags in {environment!r}")

    def require_some_evaluate(self, environments: Iterable[str]) -> None:
        """For an evaluation whose environment is in the body, not read yet."""
        if not any(self.can_evaluate(environment) for environment in environments):
            raise Forbidden(f"token {self.name!r} may not evaluate flags in any environment")

    def require_write(self, environment: str) -> None:
        if not self.can_write(environment):
            raise Forbidden(f"token {self.name!r} may not change environment {environment!r}")

    def require_some_write(self, environments: Iterable[str]) -> None:
        """For a write whose environment is not known yet (it is in the body, or the item's)."""
        if not any(self.can_write(environment) for environment in environments):
            raise Forbidden(f"token {self.name!r} may not change any environment")

    def require_read(self, environment: str | None) -> None:
        if not self.can_read(environment):
            where = "every environment" if environment is None else f"environment {environment!r}"
            raise Forbidden(f"token {self.name!r} may not read {where}")

    def require_admin(self) -> None:
        if not self.is_admin:
            raise Forbidden(f"token {self.name!r} lacks the admin scope")


#: Who acts when authentication is disabled (the embedded default, or AURORA_AUTH=disabled).
ANONYMOUS = Principal("anonymous", frozenset({ADMIN}))
#: The actor of AURORA_ADMIN_TOKEN, and of the token CLI.
BOOTSTRAP_ADMIN = "bootstrap-admin"
CLI_ACTOR = "cli"
#: Actors the service names itself: no token may take one, so history always tells them apart.
RESERVED_ACTORS = frozenset({ANONYMOUS.name, BOOTSTRAP_ADMIN, CLI_ACTOR})


def parse_scopes(scopes: Iterable[str], environments: Iterable[str]) -> frozenset[str]:
    allowed = set(environments)
    parsed = set()
    for scope in scopes:
        kind, _, environment = scope.partition(":")
        valid = (scope in {ADMIN, READ}) or (
            kind in {"read", "write", "evaluate"} and environment in allowed
        )
        if not valid:
            raise InvalidInput(
                f"unknown scope {scope!r}: use admin, read, read:<env>, write:<env> or "
                f"evaluate:<env> with env "
                f"one of {', '.join(sorted(allowed))}"
            )
        parsed.add(scope)
    if not parsed:
        raise InvalidInput("a token needs at least one scope")
    return frozenset(parsed)
