"""Evaluation context from query parameters: `properties[NAME]=VALUE`, as Unleash's frontend API
takes them (issue 10), for the GET check, evaluate and bulk endpoints.

Shared by the fast path (service/fast.py) and the routes: a route reads the pairs of its query
string (`request.query_params.multi_items()`) and passes `query_properties(...)` to
`Reads.evaluate`, `Reads.check` or `Reads.bulk_flags`.
"""

from __future__ import annotations

from collections.abc import Iterable

PREFIX = "properties["
# What one context may weigh (issue 10: "context size per evaluation, 16 KiB"); the request
# head is bounded too (AURORA_MAX_HEADER_BYTES), this bounds what reaches evaluation.
CONTEXT_BYTES = 16 * 1024


def query_properties(
    pairs: Iterable[tuple[str, str]], *, limit: int = CONTEXT_BYTES
) -> dict[str, str] | None:
    """The context properties among decoded query pairs (None when there are none). A name is
    what is between the brackets, any non-empty text; a repeated name keeps its last value.
    ValueError for an empty name or a context heavier than `limit` bytes (UTF-8)."""
    properties: dict[str, str] | None = None
    size = 0
    for name, value in pairs:
        if not (name.startswith(PREFIX) and name.endswith("]")):
            continue
        prop = name[len(PREFIX) : -1]
        if not prop:
            raise ValueError("a context property needs a name: properties[NAME]=VALUE")
        size += len(prop.encode()) + len(value.encode())
        if size > limit:
            raise ValueError(f"the context's properties exceed {limit} bytes")
        if properties is None:
            properties = {}
        properties[prop] = value
    return properties
