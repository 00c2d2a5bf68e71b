"""The evaluation context: who is asking (userId, sessionId, ...) and free string properties.

The field names are Unleash's, because rules migrate with them: `userId`, `sessionId`,
`remoteAddress`, `environment`, `appName`, `currentTime`, and `properties`. Any other name refers
to a property. `environment` is the caller's own string, unrelated to Aurora's environments.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
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


class _Fields(NamedTuple):
    user_id: str | None
    session_id: str | None
    remote_address: str | None
    environment: str | None
    app_name: str | None
    current_time: str | None
    properties: Mapping[str, str]
    #: Every field by its Unleash name, standard ones over properties of the same name: what
    #: constraints read (a constraint on "userId" never reads a property called userId).
    fields: Mapping[str, str]


class Context(_Fields):
    """One caller's context. Immutable; a tuple, so building one is cheap."""

    __slots__ = ()

    def __new__(  # noqa: PLR0917 - the tuple's own fields, in order
        cls,
        user_id: str | None = None,
        session_id: str | None = None,
        remote_address: str | None = None,
        environment: str | None = None,
        app_name: str | None = None,
        current_time: str | None = None,
        properties: Mapping[str, str] = _EMPTY,
    ) -> Context:
        standard = (user_id, session_id, remote_address, environment, app_name, current_time)
        return tuple.__new__(cls, (*standard, properties, _merge(standard, properties)))

    @classmethod
    def of(cls, data: Mapping[str, Any] | None) -> Context:
        """From the JSON shape of docs/TARGETING.md. Unknown top-level keys are properties, and
        win over a `properties` entry of the same name, as UnleashClient answers (its engine
        reads both; found by the differential test); None means absent."""
        if not data:
            return _EMPTY_CONTEXT
        properties: dict[str, str] = {}
        given = data.get("properties")
        if given and (type(given) is dict or isinstance(given, Mapping)):
            for key, raw in given.items():
                text = raw if type(raw) is str else as_text(raw)
                if text is not None:
                    properties[key] = text
        standard: list[str | None] = [None] * 6
        for key, raw in data.items():
            index = _INDEX.get(key)
            if index is not None:
                standard[index] = raw if type(raw) is str else as_text(raw)
            elif key != "properties":
                text = raw if type(raw) is str else as_text(raw)
                if text is None:
                    properties.pop(key, None)
                else:
                    properties[key] = text
        fields = dict(properties)
        for name, value in zip(STANDARD_FIELDS, standard, strict=True):
            if value is not None:
                fields[name] = value
            elif name in fields:
                del fields[name]
        return tuple.__new__(cls, (*standard, properties or _EMPTY, fields))

    def value(self, name: str) -> str | None:
        """A context field by its Unleash name; a non-standard name reads a property."""
        return self.fields.get(name)

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


def _merge(standard: tuple[str | None, ...], properties: Mapping[str, str]) -> dict[str, str]:
    fields = dict(properties)
    for name, value in zip(STANDARD_FIELDS, standard, strict=True):
        if value is not None:
            fields[name] = value
        else:
            fields.pop(name, None)
    return fields


_INDEX = {name: index for index, name in enumerate(STANDARD_FIELDS)}
_EMPTY_CONTEXT = Context()
