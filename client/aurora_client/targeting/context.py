"""The evaluation context: who is asking (userId, sessionId, ...) and free string properties.

The field names are Unleash's, because rules migrate with them: `userId`, `sessionId`,
`remoteAddress`, `environment`, `appName`, `currentTime`, and `properties`. Any other name refers
to a property. `environment` is the caller's own string, unrelated to Aurora's environments.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from operator import attrgetter
from typing import Any, NamedTuple

#: Unleash's context field names and our attribute for each.
STANDARD_FIELDS: dict[str, str] = {
    "userId": "user_id",
    "sessionId": "session_id",
    "remoteAddress": "remote_address",
    "environment": "environment",
    "appName": "app_name",
    "currentTime": "current_time",
}
_EMPTY: Mapping[str, str] = {}


def as_text(value: Any) -> str | None:
    """A context value as the string rules compare, the way a JSON value reads in Unleash's
    JavaScript SDKs: None is absent, booleans are "true"/"false", 12.0 is "12", objects and
    lists are compact JSON."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


class Context(NamedTuple):
    """One caller's context. Immutable; a tuple, so building one is cheap."""

    user_id: str | None = None
    session_id: str | None = None
    remote_address: str | None = None
    environment: str | None = None
    app_name: str | None = None
    current_time: str | None = None
    properties: Mapping[str, str] = _EMPTY

    @classmethod
    def of(cls, data: Mapping[str, Any] | None) -> Context:
        """From the JSON shape of docs/TARGETING.md. Unknown top-level keys are properties (an
        explicit `properties` entry wins), as in Unleash's SDKs; None means absent."""
        if not data:
            return _EMPTY_CONTEXT
        properties: dict[str, str] = {}
        for key, raw in data.items():
            if key not in STANDARD_FIELDS and key != "properties":
                text = as_text(raw)
                if text is not None:
                    properties[key] = text
        given = data.get("properties")
        if isinstance(given, Mapping):
            for key, raw in given.items():
                text = as_text(raw)
                if text is None:
                    properties.pop(key, None)
                else:
                    properties[key] = text
        get = data.get
        return cls(
            as_text(get("userId")),
            as_text(get("sessionId")),
            as_text(get("remoteAddress")),
            as_text(get("environment")),
            as_text(get("appName")),
            as_text(get("currentTime")),
            properties or _EMPTY,
        )

    def value(self, name: str) -> str | None:
        """A context field by its Unleash name; a non-standard name reads a property."""
        attribute = STANDARD_FIELDS.get(name)
        if attribute is None:
            return self.properties.get(name)
        value: str | None = getattr(self, attribute)
        return value

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape again (absent fields left out)."""
        out: dict[str, Any] = {
            name: getattr(self, attribute)
            for name, attribute in STANDARD_FIELDS.items()
            if getattr(self, attribute) is not None
        }
        if self.properties:
            out["properties"] = dict(self.properties)
        return out


_EMPTY_CONTEXT = Context()


def field_getter(name: str) -> Callable[[Context], str | None]:
    """A fast reader of one context field, chosen once when a constraint is compiled."""
    attribute = STANDARD_FIELDS.get(name)
    if attribute is not None:
        getter: Callable[[Context], str | None] = attrgetter(attribute)
        return getter

    def property_value(context: Context) -> str | None:
        return context.properties.get(name)

    return property_value
