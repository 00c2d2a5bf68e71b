"""Variants: the weighted choice among a flag's (or a rule's) variants, and its result.

As Unleash's SDKs choose: an override whose context field holds a listed value forces its
variant; else the bucket murmur3_x86_32("<group_id>:<stickiness value>", seed 86028157) % total
weight + 1 is compared with the cumulative weights, in list order. The stickiness is the first
variant's, as in Unleash's engine; when the first variant has none, `default` for flag variants
and the rule's rollout stickiness for rule variants (the import sets it on every strategy
variant: the strategy's `stickiness` parameter, else `default`, as Unleash picks a strategy's
variants). `default` means userId, else sessionId, else a random draw. Weights are used as
stored: Unleash's server spreads the `variable` weights when variants are written
(normalize_variants does the same), its SDKs only add them up.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mmh3 import hash as murmur3

from aurora_client.targeting import operators
from aurora_client.targeting.operators import Fields

VARIANT_SEED = 86028157
TOTAL_WEIGHT = 1000
PAYLOAD_TYPES = frozenset({"string", "number", "json", "csv"})


@dataclass(frozen=True, slots=True)
class Variant:
    """The variant an evaluation answers. `enabled` is false for the `disabled` variant;
    `feature_enabled` says whether the flag itself was on."""

    name: str
    payload: dict[str, str] | None
    enabled: bool
    feature_enabled: bool

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.payload is not None:
            out["payload"] = dict(self.payload)
        out["enabled"] = self.enabled
        out["feature_enabled"] = self.feature_enabled
        return out


DISABLED_OFF = Variant("disabled", None, False, False)  # the flag is off
DISABLED_ON = Variant("disabled", None, False, True)  # the flag is on but has no variant


def seed_of(stickiness: str, fields: Fields) -> str | None:
    """The context value a variant bucket hashes: `default` is userId, else sessionId; any
    other name is that field (None: a random draw)."""
    if stickiness == "default":
        value = fields.get("userId")
        return value if value is not None else fields.get("sessionId")
    return fields.get(stickiness)


@dataclass(frozen=True, slots=True)
class VariantSpec:
    """One stored variant, compiled: its answer is built once."""

    name: str
    weight: int
    weight_type: str
    stickiness: str | None  # None: not set (the list's default applies)
    payload: dict[str, str] | None
    overrides: tuple[tuple[str, frozenset[str]], ...]
    answer: Variant

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> VariantSpec:
        name = str(data.get("name") or "")
        weight = data.get("weight")
        stickiness = data.get("stickiness")
        payload = data.get("payload")
        if isinstance(payload, Mapping):
            payload = {"type": str(payload.get("type")), "value": str(payload.get("value"))}
        else:
            payload = None
        overrides = tuple(
            (str(o.get("context_name")), frozenset(str(v) for v in o.get("values") or ()))
            for o in data.get("overrides") or ()
            if isinstance(o, Mapping)
        )
        return cls(
            name=name,
            weight=weight if isinstance(weight, int) and not isinstance(weight, bool) else 0,
            weight_type=str(data.get("weight_type") or "variable"),
            stickiness=str(stickiness) if stickiness else None,
            payload=payload,
            overrides=overrides,
            answer=Variant(name, payload, True, True),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "weight": self.weight,
            "weight_type": self.weight_type,
            "stickiness": self.stickiness,
            "payload": self.payload,
            "overrides": [
                {"context_name": field, "values": sorted(values)}
                for field, values in self.overrides
            ],
        }


class VariantSet:
    """A list of variants with the group id and stickiness that choose among them."""

    __slots__ = ("group_id", "has_overrides", "split", "stickiness", "total", "variants")

    def __init__(
        self, variants: Sequence[VariantSpec], group_id: str, default_stickiness: str
    ) -> None:
        """`default_stickiness` applies when the first variant sets none (Unleash hashes with
        the first variant's stickiness)."""
        self.variants = tuple(variants)
        self.group_id = group_id
        first = self.variants[0].stickiness if self.variants else None
        self.stickiness = first or default_stickiness
        self.total = sum(v.weight for v in self.variants)
        self.has_overrides = any(v.overrides for v in self.variants)
        # A weighted split decides only when two or more variants can come out.
        self.split = sum(1 for v in self.variants if v.weight > 0) >= 2

    def choose(self, fields: Fields) -> tuple[VariantSpec | None, bool]:
        """The chosen variant (None when there is none to choose) and whether the weighted
        split decided it (not an override, not a single variant)."""
        if self.has_overrides:
            for variant in self.variants:
                for field, values in variant.overrides:
                    value = fields.get(field)
                    if value is None and field == "currentTime":
                        value = operators.now_text()  # as a constraint reads it
                    if value is not None and value in values:
                        return variant, False
        total = self.total
        if total <= 0:
            return None, False
        seed = seed_of(self.stickiness, fields)
        if seed is None:
            target = random.randint(1, total)  # noqa: S311 - a variant draw, not a secret
        else:
            target = murmur3(self.group_id + ":" + seed, VARIANT_SEED, False) % total + 1
        cumulative = 0
        for variant in self.variants:
            cumulative += variant.weight
            if cumulative >= target:
                return variant, self.split
        return None, False


def normalize_variants(
    variants: list[dict[str, Any]], *, stickiness: str = "default"
) -> list[dict[str, Any]]:
    """Defaults filled (`stickiness`: a rule's variants get the rule's rollout stickiness) and
    the `variable` weights spread over what the `fix` ones leave of 1000, as Unleash's server
    does when variants are written (fixVariantWeights: the first `variable` ones in list order
    get the remainder, 334, 333, 333). Expects variants that passed validation."""
    out = []
    for raw in variants:
        variant = dict(raw)
        variant.setdefault("weight_type", "variable")
        if not variant.get("stickiness"):
            variant["stickiness"] = stickiness
        variant.setdefault("payload", None)
        variant.setdefault("overrides", [])
        variant.setdefault("weight", 0)
        out.append(variant)
    variable = [v for v in out if v["weight_type"] != "fix"]
    if variable:
        left = TOTAL_WEIGHT - sum(v["weight"] for v in out if v["weight_type"] == "fix")
        share, remainder = divmod(max(left, 0), len(variable))
        for index, variant in enumerate(variable):
            variant["weight"] = share + (1 if index < remainder else 0)
    return out
