"""Property-based API testing against the live app's own OpenAPI document (schemathesis).

Every operation but the infinite SSE stream is called with generated input (a bounded number of
examples, so the suite stays fast); each response must not be a 5xx, must have a documented
status and content type, must match its documented schema, and schema-valid input must be
accepted, except where a rule cannot be said in JSON Schema (listed in `semantic_refusal`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance

from service.app import create_app
from tests.conftest import make_settings

_directory = tempfile.mkdtemp(prefix="aurora-schemathesis-")
app = create_app(make_settings(f"sqlite:///{Path(_directory) / 'aurora.db'}"))
schema = schemathesis.openapi.from_asgi("/openapi.json", app).exclude(path="/api/v1/stream")


def semantic_refusal(response: Any) -> bool:
    """Valid by the schema, refused by a rule about state or storage, each documented:
    404 (no such item), 409 (the key is taken, a segment in use), 412 (If-Match names another
    version), 422 for an integer beyond 64 bits (TiDB's JSON would silently turn it into a
    float), and 422 for targeting that could never work (docs/TARGETING.md: a segment or parent
    flag that does not exist, a prerequisite cycle, a regex RE2 refuses, a value its operator
    cannot parse; none of it can be said in JSON Schema)."""
    if response.status_code in {404, 409, 412}:
        return True
    targeting = "urn:aurora-config:problem:invalid-targeting"
    return response.status_code == 422 and ("64-bit" in response.text or targeting in response.text)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case) -> None:
    response = case.call()
    excluded = [positive_data_acceptance] if semantic_refusal(response) else []
    case.validate_response(response, excluded_checks=excluded)
