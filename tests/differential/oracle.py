"""Unleash's own answers: UnleashClient (its Rust engine, Yggdrasil) bootstrapped with a document.

No network: the client is built with a bootstrapped in-memory cache, which its constructor hands
to the engine; `initialize_client()` (registration, polling, metrics) is never called, and the
URL points at a closed port on 127.0.0.1 in case anything tried.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import UnleashClient._context as unleash_context
from aurora_client.targeting import operators
from UnleashClient import UnleashClient
from UnleashClient.cache import BaseCache
from UnleashClient.constants import FEATURES_URL
from UnleashClient.utils import InstanceAllowType

# Compile warnings ("this will always be off") and "not initialized" notices are expected here.
logging.getLogger("UnleashClient").setLevel(logging.CRITICAL)


class _MemoryCache(BaseCache):
    """A bootstrapped cache that never touches the disk (the default FileCache does)."""

    def __init__(self, document: dict[str, Any]) -> None:
        self._data: dict[str, Any] = {FEATURES_URL: json.dumps(document)}
        self.bootstrapped = True

    def set(self, key: str, value: Any) -> None:
        self._data[key] = value

    def mset(self, data: dict[str, Any]) -> None:
        self._data.update(data)

    def get(self, key: str, default: Any | None = None) -> Any:
        return self._data.get(key, default)

    def exists(self, key: str) -> bool:
        return key in self._data

    def destroy(self) -> None:
        self._data.clear()


class Unleash:
    """One document loaded into UnleashClient; answers as its SDK users see them."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.client = UnleashClient(
            url="http://127.0.0.1:9",
            app_name="aurora-differential",
            disable_metrics=True,
            disable_registration=True,
            cache=_MemoryCache(document),
            multiple_instance_mode=InstanceAllowType.SILENTLY_ALLOW,
        )
        # The client adds its own appName and environment to every context; the generated
        # contexts say what they carry, absent included.
        self.client.unleash_static_context = {}

    def is_enabled(self, name: str, context: dict[str, Any]) -> bool:
        return bool(self.client.is_enabled(name, dict(context)))

    def get_variant(self, name: str, context: dict[str, Any]) -> dict[str, Any]:
        return dict(self.client.get_variant(name, dict(context)))


@contextmanager
def frozen_clock(instant: datetime) -> Iterator[None]:
    """Both sides read `instant` as the time of the call (the currentTime a context without
    one gets): UnleashClient's context enricher and our operators. Without it a constraint on
    a missing currentTime compares the microseconds of two different calls."""

    class Frozen(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return instant.astimezone(tz)

    saved = unleash_context.datetime, operators.now_text
    unleash_context.datetime = Frozen  # type: ignore[misc]
    operators.now_text = instant.isoformat
    try:
        yield
    finally:
        unleash_context.datetime, operators.now_text = saved  # type: ignore[misc]
