"""RFC 9457 problem documents: the one place errors become HTTP responses."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.errors import AuroraError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


def problem(
    status: int, title: str, detail: str, *, slug: str, instance: str | None = None, **extra: Any
) -> JSONResponse:
    body = {
        "type": f"urn:aurora-config:problem:{slug}",
        "title": title,
        "status": status,
        "detail": detail,
        **({"instance": instance} if instance else {}),
        **extra,
    }
    return JSONResponse(jsonable_encoder(body), status_code=status, media_type=PROBLEM_JSON)


def render(exc: AuroraError, instance: str) -> JSONResponse:
    """The response for one of our errors: routes, and middlewares that answer before them."""
    response = problem(
        exc.status, exc.title, exc.detail, slug=exc.slug, instance=instance, **exc.extra
    )
    if exc.status == 503:
        response.headers["Retry-After"] = "1"
    elif exc.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="aurora-config"'
    elif exc.status == 413:
        response.headers["Connection"] = "close"  # the rest of the body is not read
    return response


async def _aurora_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AuroraError)
    return render(exc, request.url.path)


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc if part != "body") or "body"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    for err in exc.errors():
        if err.get("type") == "json_invalid":  # not JSON at all: a bad request, not bad content
            position = err.get("loc", ("body", "?"))[-1]
            reason = err.get("ctx", {}).get("error", "invalid JSON")
            detail = f"the body is not valid JSON: {reason} at position {position}"
            return problem(
                400, "Bad request", detail, slug="bad-request", instance=request.url.path
            )
    errors = [
        {"location": _location(err.get("loc", ())), "message": err.get("msg", "invalid")}
        for err in exc.errors()
    ]
    detail = "; ".join(f"{e['location']}: {e['message']}" for e in errors[:5])
    return problem(
        422, "Invalid input", detail, slug="invalid-input", instance=request.url.path, errors=errors
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    titles = {
        400: "Bad request",
        404: "Not found",
        405: "Method not allowed",
        413: "Content too large",
    }
    title = titles.get(exc.status_code, "HTTP error")
    detail = exc.detail if isinstance(exc.detail, str) else title
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no route {request.method} {request.url.path}"
    response = problem(
        exc.status_code,
        title,
        detail,
        slug=title.lower().replace(" ", "-"),
        instance=request.url.path,
    )
    if exc.headers:
        response.headers.update(exc.headers)
    if exc.status_code == 405:
        # Starlette names only the first route that matched the path; list every method the
        # path supports (RFC 9110 §15.5.6).
        methods = {
            method
            for regex, route_methods in getattr(request.app.state, "route_methods", ())
            if regex.match(request.url.path)
            for method in route_methods
        }
        if methods:
            response.headers["Allow"] = ", ".join(sorted(methods))
    return response


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(500, "Internal error", "an unexpected error occurred", slug="internal")


def install(app: FastAPI) -> None:
    app.add_exception_handler(AuroraError, _aurora_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
