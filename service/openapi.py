"""The OpenAPI document says what the API really answers: errors are RFC 9457 problems.

FastAPI documents validation errors as its own `HTTPValidationError` JSON; we answer every error
as `application/problem+json`. This rewrites the generated document once: a `Problem` schema,
and on each operation the statuses it can answer with it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from database.models import KEY_LENGTH
from service.schemas import (
    FLAG_KEY_PATTERN,
    IF_MATCH_PATTERN,
    KEY_PATTERN,
    SEGMENT_NAME_PATTERN,
    SERVICE_PATTERN,
)

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Problem",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "location": {"type": "string"},
                    "message": {"type": "string"},
                    "pointer": {"type": "string", "description": "JSON Pointer into the body"},
                    "limit": {"type": "string", "description": "The setting of the limit"},
                },
            },
        },
        "limit": {"type": "string", "description": "The setting of the limit exceeded"},
        "flags": {
            "type": "array",
            "items": {"type": "string"},
            "description": "The flags whose rules name the segment (409 in-use)",
        },
    },
}
PROBLEMS = {
    "400": "Malformed request (e.g. the body is not JSON)",
    "401": "No token, or not a valid one",
    "403": "The token lacks the scope for this",
    "404": "Not found",
    "405": "Method not allowed",
    "413": "Request body too large",
    "422": "Invalid input",
    "503": "A dependency is unavailable; retry",
}
WRITE_PROBLEMS = {
    "409": "Already exists",
    "412": "If-Match does not match the current version",
}


def _parameter_rules(environments: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """What the dependencies in service/deps.py enforce, said in the document."""
    return {
        "environment": {"enum": list(environments)},
        "service_name": {"pattern": SERVICE_PATTERN},
        "key": {"pattern": KEY_PATTERN, "maxLength": KEY_LENGTH},
        "if-match": {"pattern": IF_MATCH_PATTERN},
        # Flag keys and segment names are wider (issue 10: any Unicode but controls).
        "flag key": {"pattern": FLAG_KEY_PATTERN, "maxLength": KEY_LENGTH},
        "segment name": {"pattern": SEGMENT_NAME_PATTERN, "maxLength": KEY_LENGTH},
    }


def _rule_name(path: str, parameter: str) -> str:
    if parameter == "key" and path.startswith("/api/v1/feature-flags/"):
        return "flag key"
    if parameter == "name" and path.startswith("/api/v1/segments/"):
        return "segment name"
    return parameter


def _constrain(schema: dict[str, Any], rules: dict[str, Any]) -> None:
    """Add rules to a string schema, or to the string branch of an optional one."""
    for branch in schema.get("anyOf", [schema]):
        if branch.get("type") == "string":
            branch.update(rules)


def _drop_null(parameter: dict[str, Any]) -> None:
    """An optional parameter is one that may be left out (`required: false`), not one whose
    value may be the text "null": document only its real type."""
    branches = parameter["schema"].get("anyOf")
    if branches:
        real = [b for b in branches if b.get("type") != "null"]
        if len(real) == 1:
            extra = {k: v for k, v in parameter["schema"].items() if k != "anyOf"}
            parameter["schema"] = {**real[0], **extra}


def install(app: FastAPI, environments: tuple[str, ...]) -> None:
    rules = _parameter_rules(environments)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.pop("HTTPValidationError", None)
            components.pop("ValidationError", None)
            components["Problem"] = PROBLEM_SCHEMA
            for path, operations in schema["paths"].items():
                for method, operation in operations.items():
                    _document(path, method, operation)
                    for parameter in operation.get("parameters", []):
                        _drop_null(parameter)
                        name = _rule_name(path, parameter["name"].lower())
                        if name in rules:
                            _constrain(parameter["schema"], rules[name])
            for model in ("ConfigCreate", "FlagCreate", "SegmentCreate", "EvaluateIn"):
                _constrain(components[model]["properties"]["environment"], rules["environment"])
            scopes = ["admin", "read"] + [
                f"{kind}:{env}" for kind in ("read", "write", "evaluate") for env in environments
            ]
            components["TokenCreate"]["properties"]["scopes"]["items"]["enum"] = scopes
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _document(path: str, method: str, operation: dict[str, Any]) -> None:
    statuses = dict(PROBLEMS)
    if method in {"post", "put", "delete"}:
        statuses.update(WRITE_PROBLEMS)
    if not path.startswith("/api/"):
        statuses = {"503": PROBLEMS["503"]}  # health, status, metrics: open and simple
        if "422" in operation["responses"]:
            statuses["422"] = PROBLEMS["422"]
    responses = operation["responses"]
    for status, description in statuses.items():
        existing = responses.get(status, {})
        if status == "503" and "application/json" in existing.get("content", {}):
            continue  # /health/ready documents its own 503 body
        responses[status] = {
            "description": existing.get("description") or description,
            "content": {
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
            },
        }
