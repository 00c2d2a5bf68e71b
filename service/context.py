"""Evaluation context from query parameters: `properties[NAME]=VALUE`, as Unleash's frontend API
takes them (issue 10), for the GET check, evaluate and bulk endpoints.

Shared by the fast path (service/fast.py) and the routes (the `PropertiesQuery` dependency), so
both accept and refuse the same: an empty name is a 422, a context heavier than
AURORA_MAX_CONTEXT_BYTES a 413 naming the setting.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

import orjson
from fastapi import Depends, Request
from starlette.datastructures import State

from service.errors import InvalidInput, PayloadTooLarge

PREFIX = "properties["
DEFAULT_CONTEXT_BYTES = 16 * 1024


def query_properties(
    pairs: Iterable[tuple[str, str]],
    user_id: str | None = None,
    *,
    limit: int = DEFAULT_CONTEXT_BYTES,
) -> dict[str, str] | None:
    """The context properties among decoded query pairs, None when there are none. A name is
    what is between the brackets (any non-empty text); a repeated name keeps its last value.
    The context they make with `user_id` weighs at most `limit` bytes of JSON."""
    properties: dict[str, str] | None = None
    for name, value in pairs:
        if not (name.startswith(PREFIX) and name.endswith("]")):
            continue
        prop = name[len(PREFIX) : -1]
        if not prop:
            raise InvalidInput("a context property needs a name: properties[NAME]=VALUE")
        if properties is None:
            properties = {}
        properties[prop] = value
    if properties is not None:
        check_size({"userId": user_id, "properties": properties}, limit)
    return properties


def check_size(context: dict[str, Any], limit: int) -> None:
    """413 naming the setting when the context is over AURORA_MAX_CONTEXT_BYTES of JSON: the one
    limit of a GET's query context and a POST's body context."""
    size = len(orjson.dumps(context))
    if size > limit:
        raise PayloadTooLarge(
            f"the context is {size} bytes, over the limit of {limit} (AURORA_MAX_CONTEXT_BYTES)"
        )


def context_limit(state: State) -> int:
    limit: int = state.settings.max_context_bytes
    return limit


async def properties_query(request: Request) -> dict[str, str] | None:
    """The route side: `properties[NAME]=VALUE` of the request's query string."""
    return query_properties(
        request.query_params.multi_items(),
        request.query_params.get("user_id"),
        limit=context_limit(request.app.state),
    )


PropertiesQuery = Annotated[dict[str, str] | None, Depends(properties_query)]

# The OpenAPI description of the parameters the dependency reads from the raw query string.
PROPERTIES_PARAMETER: dict[str, Any] = {
    "parameters": [
        {
            "name": "properties",
            "in": "query",
            "style": "deepObject",
            "explode": True,
            "required": False,
            "description": (
                "Context properties for targeted flags, as Unleash's frontend API takes them: "
                "`properties[country]=DE`"
            ),
            "schema": {
                "type": "object",
                "propertyNames": {"minLength": 1},
                "additionalProperties": {"type": "string"},
            },
        }
    ]
}
