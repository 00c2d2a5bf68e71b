"""Request and response bodies, and the input rules they enforce.

Configuration keys: 1..200 characters of [A-Za-z0-9._:/-], no empty, '.' or '..' segment between
slashes (so a key can never read as a path traversal). Flag keys and segment names (issue 10:
Unleash accepts names such as `Hellø_Wørld` and emoji, and an import keeps them): 1..200
characters of any Unicode except control characters (C0, DEL, C1), the line and paragraph
separators, the bidirectional controls (which make a key read differently from what it is) and
lone surrogates, with the same rule for '/' segments (a segment name holds no '/'). Keys are
compared exactly as written (no case folding, no Unicode normalisation).

Values: any JSON up to AURORA_MAX_VALUE_BYTES encoded, nested at most MAX_VALUE_DEPTH deep,
finite numbers only.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, Self, TypeVar

import orjson
from aurora_client.evaluation import Reason
from aurora_client.state import JsonValue, Scope
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from database.models import (
    ACTOR_LENGTH,
    DESCRIPTION_LENGTH,
    KEY_LENGTH,
    SERVICE_LENGTH,
    Configuration,
    FeatureFlag,
    HistoryEntry,
    Segment,
)

MAX_VALUE_DEPTH = 32

# The same rules as JSON Schema patterns, for the OpenAPI document (no lookarounds: clients and
# test generators must be able to use them). A key segment is any run of the allowed characters
# except "." and "..".
_SEGMENT = (
    r"(?:[A-Za-z0-9_:-][A-Za-z0-9._:-]*|\.[A-Za-z0-9_:-][A-Za-z0-9._:-]*|\.\.[A-Za-z0-9._:-]+)"
)
KEY_PATTERN = rf"^{_SEGMENT}(?:/{_SEGMENT})*$"
SERVICE_PATTERN = rf"^[A-Za-z0-9._-]{{1,{SERVICE_LENGTH}}}$"
_TAG = r'(?:W/)?(?:"[0-9]{1,10}"|[0-9]{1,10})'
IF_MATCH_PATTERN = rf"^(?:\*|{_TAG}(?: *, *{_TAG})*)$"
_KEY = re.compile(rf"[A-Za-z0-9._:/-]{{1,{KEY_LENGTH}}}")
# What a flag key may not hold. The OpenAPI pattern says the same but for lone surrogates: a
# pattern cannot name them portably (without the `u` flag, ECMAScript matches UTF-16 code units,
# and would refuse every emoji), and UTF-8 cannot carry them anyway.
_REFUSED = r"\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
_FLAG_SEGMENT = (
    rf"(?:[^/.{_REFUSED}][^/{_REFUSED}]*|\.[^/.{_REFUSED}][^/{_REFUSED}]*|\.\.[^/{_REFUSED}]+)"
)
FLAG_KEY_PATTERN = rf"^{_FLAG_SEGMENT}(?:/{_FLAG_SEGMENT})*$"
SEGMENT_NAME_PATTERN = rf"^{_FLAG_SEGMENT}$"
_FLAG_KEY_REFUSED = re.compile(rf"[{_REFUSED}\ud800-\udfff]")
_SERVICE = re.compile(rf"[A-Za-z0-9._-]{{1,{SERVICE_LENGTH}}}")


def check_key(key: str) -> str:
    if not _KEY.fullmatch(key):
        raise ValueError(f"a key is 1 to {KEY_LENGTH} characters of letters, digits and . _ : / -")
    if any(segment in {"", ".", ".."} for segment in key.split("/")):
        raise ValueError("a key may not start or end with '/', or hold '//', '/./' or '/../'")
    return key


def check_flag_key(key: str, what: str = "a flag key") -> str:
    if not 1 <= len(key) <= KEY_LENGTH:
        raise ValueError(f"{what} is 1 to {KEY_LENGTH} characters")
    refused = _FLAG_KEY_REFUSED.search(key)
    if refused:
        raise ValueError(
            f"{what} may not contain U+{ord(refused.group()):04X}: control characters, line "
            "separators, bidirectional controls and lone surrogates are refused"
        )
    if any(segment in {"", ".", ".."} for segment in key.split("/")):
        raise ValueError(f"{what} may not start or end with '/', or hold '//', '/./' or '/../'")
    return key


def check_segment_name(name: str) -> str:
    """A flag key's rule, without '/': a name is one path segment of /segments/{name}."""
    if "/" in name:
        raise ValueError("a segment name may not contain '/'")
    return check_flag_key(name, "a segment name")


def check_service(name: str) -> str:
    if not _SERVICE.fullmatch(name):
        raise ValueError(
            f"a service name is 1 to {SERVICE_LENGTH} characters of letters, digits and . _ -"
        )
    return name


def check_text(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (no lone surrogates)") from None
    return text


#: Request limits a route and the fast path (service/fast.py) must agree on.
USER_ID_LENGTH = 256
LAST_EVENT_ID_LENGTH = 200


def check_value(value: JsonValue, max_bytes: int) -> JsonValue:
    """Raise ValueError unless `value` is storable JSON within the limits."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_VALUE_DEPTH:
            raise ValueError(f"value is nested deeper than {MAX_VALUE_DEPTH} levels")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
        elif isinstance(node, float) and not math.isfinite(node):
            raise ValueError("value holds NaN or Infinity, which JSON cannot carry")
    try:
        size = len(orjson.dumps(value))
    except orjson.JSONEncodeError as exc:
        raise ValueError(f"value is not valid JSON: {exc}") from None
    if size > max_bytes:
        raise ValueError(f"value is {size} bytes of JSON; the limit is {max_bytes}")
    return value


Key = Annotated[
    str,
    AfterValidator(check_key),
    Field(json_schema_extra={"pattern": KEY_PATTERN, "maxLength": KEY_LENGTH}),
]
FlagKey = Annotated[
    str,
    AfterValidator(check_flag_key),
    Field(json_schema_extra={"pattern": FLAG_KEY_PATTERN, "maxLength": KEY_LENGTH}),
]
ServiceName = Annotated[
    str, AfterValidator(check_service), Field(json_schema_extra={"pattern": SERVICE_PATTERN})
]
Description = Annotated[str, Field(max_length=DESCRIPTION_LENGTH), AfterValidator(check_text)]
FlagName = Annotated[str, Field(min_length=1, max_length=KEY_LENGTH), AfterValidator(check_text)]


def _whole(value: Any) -> Any:
    """JSON (and JSON Schema) count 74.0 as the integer 74; 74.5 and "74" stay refused."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Percentage = Annotated[int, Field(ge=0, le=100), BeforeValidator(_whole)]


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


# Stored as naive UTC (portable across TiDB, MySQL and SQLite); shown with its offset (RFC 3339).
Timestamp = Annotated[datetime, AfterValidator(_utc)]
Actor = Annotated[str, Field(min_length=1, max_length=ACTOR_LENGTH)]


class Body(BaseModel):
    """Request bodies: unknown fields and loose types are errors, not silently dropped."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ConfigCreate(Body):
    config_key: Key
    config_value: JsonValue = Field(
        description="Any JSON value, null included (required); integers must fit in 64 bits"
    )
    environment: str | None = Field(
        default=None, description="Defaults to AURORA_DEFAULT_ENVIRONMENT"
    )
    service_name: ServiceName | None = Field(default=None, description="Omit for a global value")
    description: Description | None = None


class ConfigUpdate(Body):
    model_config = ConfigDict(json_schema_extra={"minProperties": 1})
    config_value: JsonValue = None
    description: Description | None = None

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("send config_value and/or description")
        return self

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class ConfigValueSet(Body):
    value: JsonValue = Field(description="Any JSON value, null included")
    description: Description | None = None


class ItemOut(BaseModel):
    """A configuration, flag or segment as the API shows it."""

    @classmethod
    def of(cls, item: Configuration | FeatureFlag | Segment | dict[str, Any]) -> Self:
        """From a row, or from the item as the read model holds it."""
        if isinstance(item, dict):
            return cls.model_validate(item)
        return cls.model_validate(item, from_attributes=True)


class ConfigOut(ItemOut):
    id: int
    config_key: str
    config_value: JsonValue
    environment: str
    service_name: str | None
    description: str | None
    version: int
    created_at: Timestamp
    updated_at: Timestamp
    created_by: str
    updated_by: str


class ValueOut(BaseModel):
    key: str
    value: JsonValue
    environment: str
    service_name: str | None = Field(description="The service asked for")
    scope: Scope = Field(
        description="'service' when the service's own value matched, else 'global'"
    )
    version: int


T = TypeVar("T")


class PageOut(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class HistoryOut(BaseModel):
    version: int
    action: str
    actor: str
    changed_at: Timestamp
    environment: str
    service_name: str | None
    key: str
    old_state: dict[str, JsonValue] | None
    new_state: dict[str, JsonValue] | None

    @classmethod
    def of(cls, entry: HistoryEntry) -> HistoryOut:
        return cls(
            version=entry.version,
            action=entry.action,
            actor=entry.actor,
            changed_at=entry.changed_at,
            environment=entry.environment,
            service_name=entry.service_name,
            key=entry.item_key,
            old_state=entry.old_state,
            new_state=entry.new_state,
        )


# -- targeting (issue 10; the format: docs/TARGETING.md) ---------------------------------------
# Shapes only: what a value means (an operator, a regex, a number, a segment, a cycle) is checked
# by aurora_client.targeting.validate_targeting, which names the rule and constraint it refuses.

OPERATORS = (
    "IN",
    "NOT_IN",
    "STR_STARTS_WITH",
    "STR_ENDS_WITH",
    "STR_CONTAINS",
    "NUM_EQ",
    "NUM_GT",
    "NUM_GTE",
    "NUM_LT",
    "NUM_LTE",
    "DATE_AFTER",
    "DATE_BEFORE",
    "SEMVER_EQ",
    "SEMVER_GT",
    "SEMVER_GTE",
    "SEMVER_LT",
    "SEMVER_LTE",
    "REGEX",
    "IN_CIDR",
)
NAME_LENGTH = 200
Text = Annotated[str, AfterValidator(check_text)]
Name = Annotated[str, Field(min_length=1, max_length=NAME_LENGTH), AfterValidator(check_text)]
RuleId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
Weight = Annotated[int, Field(ge=0, le=1000), BeforeValidator(_whole)]


class ConstraintIn(Body):
    context_name: Name = Field(
        description="userId, sessionId, remoteAddress, environment, appName, currentTime, or a "
        "property name"
    )
    operator: str = Field(json_schema_extra={"enum": list(OPERATORS)})
    values: list[Text] = Field(default_factory=list, description="For IN, NOT_IN, STR_*, IN_CIDR")
    value: Text | None = Field(default=None, description="For NUM_*, DATE_*, SEMVER_*, REGEX")
    inverted: bool = False
    case_insensitive: bool = False


class RolloutIn(Body):
    percentage: Percentage = 100
    stickiness: Name = Field(
        default="default", description="default, userId, sessionId, random, or a context field"
    )
    group_id: Name | None = Field(default=None, description="null: the flag key")


class PayloadIn(Body):
    type: Literal["string", "number", "json", "csv"]
    value: Text


class OverrideIn(Body):
    context_name: Name
    values: list[Text]


class VariantIn(Body):
    name: Name
    weight: Weight = Field(default=0, description="Out of 1000")
    weight_type: Literal["variable", "fix"] = "variable"
    stickiness: Name = "default"
    payload: PayloadIn | None = None
    overrides: list[OverrideIn] = Field(default_factory=list)


class RuleIn(Body):
    id: RuleId | None = Field(default=None, description="Assigned (r1, r2, ...) when omitted")
    constraints: list[ConstraintIn] = Field(default_factory=list, description="All must hold")
    segments: list[Name] = Field(
        default_factory=list, description="Names of segments of the flag's environment"
    )
    rollout: RolloutIn = Field(default_factory=RolloutIn)
    variants: list[VariantIn] = Field(default_factory=list)


class PrerequisiteIn(Body):
    flag_key: FlagKey = Field(description="A flag of the same environment")
    enabled: bool = Field(default=True, description="false: the parent must be disabled")
    variants: list[Name] = Field(default_factory=list, description="Any of these, if listed")


def rules_json(rules: list[RuleIn]) -> list[dict[str, Any]]:
    """As stored and validated: every field, but no id where none was sent (one is assigned)."""
    dumped = [rule.model_dump() for rule in rules]
    for rule in dumped:
        if rule["id"] is None:
            del rule["id"]
    return dumped


def items_json(items: list[VariantIn] | list[PrerequisiteIn]) -> list[dict[str, Any]]:
    return [item.model_dump() for item in items]


TargetingJson = list[dict[str, JsonValue]]
RULES_DOC = "Ordered; the first that matches decides (docs/TARGETING.md)"


class FlagCreate(Body):
    flag_key: FlagKey
    flag_name: FlagName | None = Field(default=None, description="Defaults to the flag key")
    description: Description | None = None
    is_enabled: bool = False
    rollout_percentage: Percentage = 100
    environment: str | None = Field(
        default=None, description="Defaults to AURORA_DEFAULT_ENVIRONMENT"
    )
    rules: list[RuleIn] = Field(default_factory=list, description=RULES_DOC)
    variants: list[VariantIn] = Field(default_factory=list)
    prerequisites: list[PrerequisiteIn] = Field(default_factory=list)

    def targeting(self) -> dict[str, list[dict[str, Any]]]:
        return {
            "rules": rules_json(self.rules),
            "variants": items_json(self.variants),
            "prerequisites": items_json(self.prerequisites),
        }


class FlagUpdate(Body):
    model_config = ConfigDict(json_schema_extra={"minProperties": 1})
    flag_name: FlagName | None = None
    description: Description | None = None
    is_enabled: bool | None = None
    rollout_percentage: Percentage | None = None
    rules: list[RuleIn] | None = Field(default=None, description=RULES_DOC)
    variants: list[VariantIn] | None = None
    prerequisites: list[PrerequisiteIn] | None = None

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not self.model_fields_set:
            raise ValueError(
                "send at least one of flag_name, description, is_enabled, rollout_percentage, "
                "rules, variants, prerequisites"
            )
        return self

    def changes(self) -> dict[str, Any]:
        """The fields sent; null means "unchanged" except for description (null clears it)."""
        dumps: dict[str, Any] = {
            "rules": lambda: rules_json(self.rules or []),
            "variants": lambda: items_json(self.variants or []),
            "prerequisites": lambda: items_json(self.prerequisites or []),
        }
        return {
            name: dumps[name]() if name in dumps else getattr(self, name)
            for name in self.model_fields_set
            if name == "description" or getattr(self, name) is not None
        }


class FlagOut(ItemOut):
    id: int
    flag_key: str
    flag_name: str
    description: str | None
    environment: str
    is_enabled: bool
    rollout_percentage: int
    rules: TargetingJson = Field(default_factory=list, description=RULES_DOC)
    variants: TargetingJson = Field(default_factory=list)
    prerequisites: TargetingJson = Field(default_factory=list)
    version: int
    created_at: Timestamp
    updated_at: Timestamp
    created_by: str
    updated_by: str


class EvaluationOut(BaseModel):
    flag_key: str
    environment: str
    user_id: str | None
    enabled: bool
    reason: Reason
    bucket: int | None = Field(description="The user's stable bucket, 1..100; null without a user")
    rollout_percentage: int
    version: int


class CheckOut(BaseModel):
    enabled: bool
