"""aurora_client.targeting is pure (STYLE §5): importing it loads no server stack and no I/O
client; service.targeting loads no web layer."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        (
            "aurora_client.targeting",
            "{'sqlalchemy', 'redis', 'pydantic', 'fastapi', 'starlette', 'database', 'cache', "
            "'service'}",
        ),
        (
            "service.targeting.unleash",
            "{'sqlalchemy', 'redis', 'fastapi', 'starlette', 'database', 'cache'}",
        ),
    ],
)
def test_imports_stay_pure(module: str, forbidden: str) -> None:
    probe = (
        f"import sys, {module}; "
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {forbidden}); "
        "print(','.join(bad))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == ""
