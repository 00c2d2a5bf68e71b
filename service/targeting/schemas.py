"""Bodies of the targeting writes (a flag's rules, variants and prerequisites, each replaced as a
whole list) and of segments. The shapes of a rule, constraint, variant and prerequisite are in
`service.schemas`, which the flag bodies share."""

from __future__ import annotations

from typing import Annotated, Any, Self

from pydantic import AfterValidator, ConfigDict, Field, model_validator

from database.models import KEY_LENGTH
from service.schemas import (
    RULES_DOC,
    SEGMENT_NAME_PATTERN,
    Body,
    ConstraintIn,
    Description,
    ItemOut,
    PrerequisiteIn,
    RuleIn,
    TargetingJson,
    Timestamp,
    VariantIn,
    check_segment_name,
    items_json,
    rules_json,
)

SegmentName = Annotated[
    str,
    AfterValidator(check_segment_name),
    Field(json_schema_extra={"pattern": SEGMENT_NAME_PATTERN, "maxLength": KEY_LENGTH}),
]
CONSTRAINTS_DOC = "All must hold for a rule that names the segment to match"


class RulesBody(Body):
    rules: list[RuleIn] = Field(description=RULES_DOC)

    def stored(self) -> list[dict[str, Any]]:
        return rules_json(self.rules)


class VariantsBody(Body):
    variants: list[VariantIn]

    def stored(self) -> list[dict[str, Any]]:
        return items_json(self.variants)


class PrerequisitesBody(Body):
    prerequisites: list[PrerequisiteIn]

    def stored(self) -> list[dict[str, Any]]:
        return items_json(self.prerequisites)


def constraints_json(constraints: list[ConstraintIn]) -> list[dict[str, Any]]:
    return [constraint.model_dump() for constraint in constraints]


class SegmentCreate(Body):
    name: SegmentName
    description: Description | None = None
    constraints: list[ConstraintIn] = Field(default_factory=list, description=CONSTRAINTS_DOC)
    environment: str | None = Field(
        default=None, description="Defaults to AURORA_DEFAULT_ENVIRONMENT"
    )


class SegmentUpdate(Body):
    model_config = ConfigDict(json_schema_extra={"minProperties": 1})
    description: Description | None = None
    constraints: list[ConstraintIn] | None = Field(default=None, description=CONSTRAINTS_DOC)

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("send description and/or constraints")
        return self

    def changes(self) -> dict[str, Any]:
        """The fields sent; null clears the description and leaves the constraints unchanged."""
        changes: dict[str, Any] = {}
        if "description" in self.model_fields_set:
            changes["description"] = self.description
        if self.constraints is not None:
            changes["constraints"] = constraints_json(self.constraints)
        return changes


class SegmentOut(ItemOut):
    id: int
    name: str
    environment: str
    description: str | None
    constraints: TargetingJson
    version: int
    created_at: Timestamp
    updated_at: Timestamp
    created_by: str
    updated_by: str
