"""Import direction (STYLE §1): database/, cache/ and the SDK never load FastAPI or service/."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "module",
    [
        "aurora_client",
        "aurora_client.evaluation",
        "database.repositories",
        "database.uow",
        "database.migrations",
        "cache.read_model",
        "cache.replica",
        "cache.feed",
        "cache.broadcaster",
        "cache.stream",
        "cache.breaker",
        "cache.tokens",
    ],
)
def test_lower_layers_do_not_import_the_web_layer(module: str) -> None:
    probe = (
        f"import sys, {module}; "
        "web = {'fastapi', 'starlette', 'service'}; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in web); "
        "print(','.join(bad))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == ""


def test_the_sdk_does_not_import_the_server_stack() -> None:
    probe = (
        "import sys, aurora_client; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'sqlalchemy', 'redis', 'pydantic', 'fastapi', 'database', 'cache', 'service'}); "
        "print(','.join(bad))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == ""
