"""Request dependencies: the store, input rules that depend on settings, actor and If-Match.

All `async def`: they do no I/O, and FastAPI runs a plain `def` dependency in the thread pool,
which cost a thread hop per dependency per request (measured: the evaluate route served a tenth
of the fast path's requests per second until this changed).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Annotated, Any

from aurora_client.state import JsonValue
from aurora_client.targeting import Limits
from fastapi import Depends, Header, Path, Query, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from service.errors import InvalidInput, Unauthenticated
from service.etag import IfMatch
from service.principal import Principal
from service.propagation import Propagator, Written
from service.reads import Reads
from service.schemas import (
    check_flag_key,
    check_key,
    check_segment_name,
    check_service,
    check_value,
)
from service.settings import Settings
from service.store import Store


@dataclass(frozen=True, slots=True)
class Rules:
    """Input rules configured by settings: the environments, the value size limit and the
    targeting limits."""

    environments: tuple[str, ...]
    default_environment: str
    max_value_bytes: int
    limits: Limits = field(default_factory=Limits)
    max_segments: int = 1000

    @classmethod
    def of(cls, settings: Settings) -> Rules:
        return cls(
            settings.environments,
            settings.default_environment,
            settings.max_value_bytes,
            Limits(
                rules_per_flag=settings.max_rules_per_flag,
                constraints_per_rule=settings.max_constraints_per_rule,
                values_per_constraint=settings.max_values_per_constraint,
            ),
            settings.max_segments_per_environment,
        )

    def environment(self, name: str | None) -> str:
        if name is None:
            return self.default_environment
        if name not in self.environments:
            raise InvalidInput(
                f"unknown environment {name!r}; allowed: {', '.join(self.environments)}"
            )
        return name

    def value(self, value: JsonValue) -> JsonValue:
        try:
            return check_value(value, self.max_value_bytes)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None


async def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


async def get_rules(request: Request) -> Rules:
    rules: Rules = request.app.state.rules
    return rules


async def get_reads(request: Request) -> Reads:
    reads: Reads = request.app.state.reads
    return reads


async def get_writes(request: Request) -> Propagator:
    writes: Propagator = request.app.state.propagator
    return writes


PROPAGATION_HEADER = "X-Aurora-Propagation"


def mark_propagation(response: Response, written: Written[Any]) -> None:
    """Tell the writer whether every instance can already see the change (`complete`), a newer
    change of the item is there already (`superseded`), or it is on its way (`pending`)."""
    response.headers[PROPAGATION_HEADER] = written.outcome.value


StoreDep = Annotated[Store, Depends(get_store)]
ReadsDep = Annotated[Reads, Depends(get_reads)]
WritesDep = Annotated[Propagator, Depends(get_writes)]
RulesDep = Annotated[Rules, Depends(get_rules)]


async def environment_query(
    rules: RulesDep,
    environment: Annotated[
        str | None, Query(description="Defaults to AURORA_DEFAULT_ENVIRONMENT", max_length=64)
    ] = None,
) -> str:
    return rules.environment(environment)


async def environment_filter(
    rules: RulesDep, environment: Annotated[str | None, Query(max_length=64)] = None
) -> str | None:
    """For list filters: omitted means every environment."""
    return None if environment is None else rules.environment(environment)


async def service_query(
    service_name: Annotated[
        str | None, Query(max_length=200, description="Omit for the global scope")
    ] = None,
) -> str | None:
    if service_name is None:
        return None
    try:
        return check_service(service_name)
    except ValueError as exc:
        raise InvalidInput(f"service_name: {exc}") from None


async def key_path(key: Annotated[str, Path(description="The key; it may contain '/'")]) -> str:
    try:
        return check_key(key)
    except ValueError as exc:
        raise InvalidInput(f"key {key[:64]!r}: {exc}") from None


async def flag_key_path(
    key: Annotated[str, Path(description="The flag key, percent-encoded; it may contain '/'")],
) -> str:
    try:
        return check_flag_key(key)
    except ValueError as exc:
        raise InvalidInput(f"key {key[:64]!r}: {exc}") from None


async def segment_name_path(
    name: Annotated[str, Path(description="The segment name, percent-encoded")],
) -> str:
    try:
        return check_segment_name(name)
    except ValueError as exc:
        raise InvalidInput(f"name {name[:64]!r}: {exc}") from None


WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


async def documented_query_only(request: Request) -> None:
    """A write takes exactly the query parameters it declares (and documents). A write names its
    scope in the query or the body; a misplaced or misspelt parameter silently ignored would
    make it land elsewhere (`POST /feature-flags/?environment=staging` went to production)."""
    if request.method not in WRITES or not request.query_params:
        return
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    known = _query_names(route.dependant)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        takes = ", ".join(sorted(known)) if known else "none"
        raise InvalidInput(
            f"unknown query parameter {', '.join(map(repr, unknown))}; this endpoint takes {takes}"
        )


def _query_names(dependant: Dependant) -> set[str]:
    """The query parameters a route reads, through all its dependencies."""
    names = {param.alias for param in dependant.query_params}
    for dependency in dependant.dependencies:
        names |= _query_names(dependency)
    return names


async def get_principal(request: Request) -> Principal:
    """Who is asking: set by AuthMiddleware (the token's name is the actor in history)."""
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:  # never silently anonymous
        raise Unauthenticated("the request was not authenticated")
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def readable_environment(
    env: Annotated[str, Depends(environment_query)], principal: PrincipalDep
) -> str:
    principal.require_read(env)
    return env


async def evaluable_environment(
    env: Annotated[str, Depends(environment_query)], principal: PrincipalDep
) -> str:
    principal.require_evaluate(env)
    return env


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def readable_filter(
    rules: RulesDep,
    env: Annotated[str | None, Depends(environment_filter)],
    principal: PrincipalDep,
) -> tuple[str, ...] | None:
    """The environments a list covers: the one named, else every one (None) for a token that
    may read them all, else those this token may read (403 only if that is none)."""
    if env is not None or principal.can_read(None):
        principal.require_read(env)
        return None if env is None else (env,)
    readable = tuple(e for e in rules.environments if principal.can_read(e))
    if not readable:
        principal.require_read(None)
    return readable


class ScopeFirstRoute(APIRoute):
    """A route that refuses a write the token may not make (403) before anything of the request
    is read: before its body is parsed (a malformed JSON body included) or validated, and before
    any query parameter is, so that a 422 never tells a token what a write it may not make would
    need (issue 9). A dependency would run too late: FastAPI parses the JSON body first.

    Where the route takes the environment from the query, the token must be able to write that
    one (the default when it is omitted; a made-up name is one it cannot write). Where the body
    or the item names it, the token must be able to write some environment; the use case checks
    the one named, and a by-id write answers 404 for an item the token may not read.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        env_in_query = "environment" in _query_names(self.dependant)

        async def scope_first(request: Request) -> Response:
            if request.method in WRITES:
                principal, rules = await get_principal(request), await get_rules(request)
                if env_in_query:
                    named = request.query_params.get("environment")
                    principal.require_write(rules.default_environment if named is None else named)
                else:
                    principal.require_some_write(rules.environments)
            return await handler(request)

        return scope_first


class EvaluateFirstRoute(APIRoute):
    """The evaluation routes: a token must be able to evaluate flags (`evaluate:<env>`, or read
    or write there) before anything else of the request is read. POST is an evaluation here,
    not a write: ScopeFirstRoute would ask for a write scope. Where the body names the
    environment, some environment first, then the route checks the one named."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        env_in_query = "environment" in _query_names(self.dependant)

        async def evaluate_first(request: Request) -> Response:
            principal, rules = await get_principal(request), await get_rules(request)
            if env_in_query:
                named = request.query_params.get("environment")
                principal.require_evaluate(rules.default_environment if named is None else named)
            else:
                principal.require_some_evaluate(rules.environments)
            return await handler(request)

        return evaluate_first


class AdminFirstRoute(APIRoute):
    """A route only admins may call: 403 before anything of the request is read (its body, its
    parameters), for the same reason as ScopeFirstRoute."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def admin_first(request: Request) -> Response:
            (await get_principal(request)).require_admin()
            return await handler(request)

        return admin_first


async def if_match_header(
    if_match: Annotated[
        str | None,
        Header(max_length=200, description="Only change the item if its version is one of these"),
    ] = None,
) -> IfMatch | None:
    return IfMatch.parse(if_match)


EnvQuery = Annotated[str, Depends(environment_query)]
ReadableEnv = Annotated[str, Depends(readable_environment)]
EvaluableEnv = Annotated[str, Depends(evaluable_environment)]
ReadableFilter = Annotated[tuple[str, ...] | None, Depends(readable_filter)]
ServiceQuery = Annotated[str | None, Depends(service_query)]
KeyPath = Annotated[str, Depends(key_path)]
FlagKeyPath = Annotated[str, Depends(flag_key_path)]
SegmentNamePath = Annotated[str, Depends(segment_name_path)]
IfMatchDep = Annotated[IfMatch | None, Depends(if_match_header)]
