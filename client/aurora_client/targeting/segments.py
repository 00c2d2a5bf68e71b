"""Segments: named, reusable sets of constraints, referenced by rules of many flags.

A rule that names a segment holds only when every constraint of the segment holds too. Segments
are passed to evaluation by name (one mapping per environment), so a change of a segment changes
every flag that uses it without recompiling the flags.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aurora_client.targeting.operators import Check, Constraint, Fields, compile_constraint


@dataclass(frozen=True, slots=True)
class Segment:
    """A segment compiled for evaluation, immutable."""

    name: str
    version: int
    constraints: tuple[Constraint, ...]
    checks: tuple[Check, ...]
    #: Why a constraint of this segment cannot be compiled: flags using it are then off.
    error: str | None

    @classmethod
    def of(cls, item: Mapping[str, Any]) -> Segment:
        """From the segment item JSON ({"name", "constraints", "version", ...})."""
        constraints = tuple(
            compile_constraint(c) for c in item.get("constraints") or () if isinstance(c, Mapping)
        )
        version = item.get("version")
        name = str(item.get("name") or "")
        error = next(
            (
                f"segment {name!r} constraint {index}: {constraint.broken}"
                for index, constraint in enumerate(constraints)
                if constraint.broken is not None
            ),
            None,
        )
        return cls(
            name=name,
            version=version if isinstance(version, int) else 0,
            constraints=constraints,
            checks=tuple(c.check for c in constraints),
            error=error,
        )

    def matches(self, fields: Fields) -> bool:
        for check in self.checks:  # noqa: SIM110 - a plain loop: all() costs more here
            if not check(fields):
                return False
        return True
