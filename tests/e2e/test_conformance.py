"""Unleash's client specification through the service and the SDK (issue 10): each spec file is
imported with `POST /api/v1/import/unleash` into an environment of its own, then every case is
evaluated through `POST /api/v1/feature-flags/evaluate/{key}` and through an SDK client that
followed the stream; both must give the spec's expected answer (275 cases: 223 toggle, 52
variant, feature_enabled included). tests/unit/targeting/test_conformance.py runs the same
cases through the evaluation module alone."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from aurora_client import AuroraClient

from tests.e2e.servers import Server
from tests.unleash_spec import FILES, MISSING_FLAG_VARIANT, load, spec_dir

ENVIRONMENTS = {name: "spec" + name[:2] for name in FILES}


@pytest.fixture(scope="module")
def specs(request: pytest.FixtureRequest) -> Path:
    return spec_dir(Path(str(request.config.rootpath)))


def _evaluate(http: httpx.Client, env: str, key: str, context: dict[str, Any]) -> dict[str, Any]:
    response = http.post(
        f"/api/v1/feature-flags/evaluate/{quote(key, safe='')}",
        json={"environment": env, "context": context},
    )
    if response.status_code == 404:  # a toggle the state does not have: off, `disabled`
        return {"enabled": False, "variant": MISSING_FLAG_VARIANT}
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_every_case_through_the_api_and_the_sdk(
    specs: Path, instance: Callable[..., AbstractContextManager[Server]]
) -> None:
    envs = ",".join(ENVIRONMENTS.values())
    with (
        instance(AURORA_ENVIRONMENTS=envs, AURORA_DEFAULT_ENVIRONMENT="spec01") as server,
        httpx.Client(base_url=server.url, timeout=10) as http,
    ):
        passed, failures = 0, []
        for name, env in ENVIRONMENTS.items():
            spec = load(specs, name)
            imported = http.post(
                "/api/v1/import/unleash", params={"environment": env}, json=spec["state"]
            )
            assert imported.status_code == 200, (name, imported.text)
            sdk = AuroraClient(server.url, environment=env)
            sdk.start()
            try:
                assert sdk.wait_until_ready(timeout=10), name
                for case in spec.get("tests", []):
                    key, context = case["toggleName"], case["context"]
                    api = _evaluate(http, env, key, context)["enabled"]
                    local = sdk.is_enabled(key, context=context)
                    if api == local == case["expectedResult"]:
                        passed += 1
                    else:
                        failures.append(f"{name}: {case['description']}: api {api}, sdk {local}")
                for case in spec.get("variantTests", []):
                    key, context = case["toggleName"], case["context"]
                    api = _evaluate(http, env, key, context)["variant"]
                    local = sdk.get_variant(key, context=context).to_dict()
                    if api == local == case["expectedResult"]:
                        passed += 1
                    else:
                        failures.append(f"{name}: {case['description']}: api {api}, sdk {local}")
            finally:
                sdk.close()
        assert failures == []
        assert passed == 275
