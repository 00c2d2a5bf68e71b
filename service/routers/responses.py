"""What the configuration and flag routers share: paging parameters, the propagation header's
documentation, and stamping an item's ETag (and propagation) on the response."""

from __future__ import annotations

from typing import Annotated, Any, Protocol, TypeVar

from fastapi import Query, Response

from service.deps import PROPAGATION_HEADER, mark_propagation
from service.etag import format_etag
from service.propagation import Written

Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=1_000_000_000)]
WRITTEN = {"headers": {PROPAGATION_HEADER: {"description": "complete, or pending (in the outbox)"}}}


class _Versioned(Protocol):
    version: int


V = TypeVar("V", bound=_Versioned)


def shown(response: Response, out: V, written: Written[Any] | None = None) -> V:
    """`out` with its ETag set, and for a write whether the change has propagated."""
    response.headers["ETag"] = format_etag(out.version)
    if written is not None:
        mark_propagation(response, written)
    return out
