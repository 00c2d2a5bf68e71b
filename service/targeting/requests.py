"""The evaluate API's bodies: a context in, a result per flag out (docs/TARGETING.md)."""

from __future__ import annotations

from typing import Annotated, Any

from aurora_client.targeting import Context, Result
from pydantic import BaseModel, Field

from service.context import check_size
from service.schemas import Body

#: A context field's value: bounded, like a user id.
ContextText = Annotated[str, Field(max_length=1024)]


class ContextIn(Body):
    """Unleash's context fields (their names, so a migrated front end sends what it sent)."""

    userId: ContextText | None = None
    sessionId: ContextText | None = None
    remoteAddress: ContextText | None = None
    environment: ContextText | None = Field(
        default=None, description="The caller's own environment string (not Aurora's scope)"
    )
    appName: ContextText | None = None
    currentTime: ContextText | None = Field(
        default=None, description="RFC 3339; defaults to the time of the evaluation"
    )
    properties: dict[str, ContextText | None] = Field(
        default_factory=dict, description="Free string properties; null means absent"
    )

    def to_context(self, max_bytes: int) -> Context:
        return checked_context(self.model_dump(exclude_none=True), max_bytes)


def checked_context(data: dict[str, Any], max_bytes: int) -> Context:
    """The context, unless its JSON is over the limit (413 naming the setting)."""
    check_size(data, max_bytes)
    return Context.of(data)


class EvaluateIn(Body):
    environment: str | None = Field(
        default=None, description="Aurora's environment; defaults to AURORA_DEFAULT_ENVIRONMENT"
    )
    context: ContextIn = Field(default_factory=ContextIn)


class VariantOut(BaseModel):
    name: str
    payload: dict[str, str] | None = Field(
        default=None, description='{"type": "string"|"number"|"json"|"csv", "value": "..."}'
    )
    enabled: bool
    feature_enabled: bool = Field(description="Whether the flag itself is on for this context")


class ResultOut(BaseModel):
    enabled: bool
    variant: VariantOut
    reason: str = Field(
        description="DISABLED, PREREQUISITE_FAILED, TARGETING_MATCH, SPLIT, DEFAULT or ERROR"
    )
    rule_index: int | None = Field(description="The rule that decided it, from 0")
    rule_id: str | None
    error_code: str | None
    version: int


def result_json(item: dict[str, Any], result: Result) -> dict[str, Any]:
    """One flag's answer (the ResultOut shape), built as a dict: the all-flags evaluation
    answers a hundred of these per request, and a pydantic model each costs more than the
    evaluation itself."""
    return {**result.to_dict(), "version": int(item["version"])}


class FlagResultOut(ResultOut):
    flag_key: str
    environment: str
    explain: dict[str, Any] | None = Field(
        default=None, description="With ?explain=true: per prerequisite, rule and constraint"
    )


class AllResultsOut(BaseModel):
    environment: str
    flags: dict[str, ResultOut]
