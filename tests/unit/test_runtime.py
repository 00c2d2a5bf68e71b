"""What the runtime says at start about the Redis it is given."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from service.runtime import Runtime
from tests.conftest import make_settings

pytestmark = pytest.mark.anyio


class ConfigOnly:
    def __init__(self, config: dict[str, str]) -> None:
        self.config = config

    async def config_get(self, pattern: str) -> dict[str, str]:
        assert pattern == "maxmemory*"
        return self.config


@pytest.mark.parametrize(
    ("config", "warned"),
    [
        ({"maxmemory": "1073741824", "maxmemory-policy": "allkeys-lru"}, True),
        ({"maxmemory": "1073741824", "maxmemory-policy": "noeviction"}, False),
        ({"maxmemory": "1073741824", "maxmemory-policy": "volatile-lru"}, False),  # no TTLs
        ({"maxmemory": "0", "maxmemory-policy": "allkeys-lru"}, False),  # no limit
    ],
)
async def test_a_redis_that_may_evict_the_read_model_is_named_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, config: dict[str, str], warned: bool
) -> None:
    settings = make_settings(f"sqlite:///{tmp_path}/r.db", redis_url="redis://127.0.0.1:1/0")
    runtime = Runtime.build(settings, "test")
    real = runtime.redis
    runtime.redis = ConfigOnly(config)  # type: ignore[assignment]
    try:
        with caplog.at_level(logging.WARNING, logger="service.runtime"):
            await runtime._warn_if_redis_may_evict()
    finally:
        await real.aclose()
        await runtime.feed_redis.aclose()
        runtime.engine.dispose()
    assert any("may evict" in r.getMessage() for r in caplog.records) is warned
