"""Prerequisites (Unleash: dependencies): parent flags that must be on, off, or in given variants.

As in Unleash, prerequisites are one level deep: a parent that has prerequisites of its own never
satisfies (so a cycle can never turn a flag on), and a missing parent never satisfies. A parent
is evaluated for the same context; with `variants`, the parent's variant must be one of them (a
parent without variants passes that part, as in Unleash's engine).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Prerequisite:
    flag_key: str
    enabled: bool
    variants: frozenset[str]
    listed: tuple[str, ...]  # the variants in the written order, for explain

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Prerequisite:
        listed = tuple(str(v) for v in data.get("variants") or ())
        return cls(
            flag_key=str(data.get("flag_key") or ""),
            enabled=data.get("enabled") is not False,
            variants=frozenset(listed),
            listed=listed,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"flag_key": self.flag_key, "enabled": self.enabled, "variants": list(self.listed)}


def find_cycle(start: str, parents: Callable[[str], Iterable[str]]) -> list[str] | None:
    """A path start -> ... -> start through the prerequisite graph (`parents` gives a flag's
    parents' keys), or None when start is on no cycle."""
    path = [start]
    stack = [iter(parents(start))]
    seen = {start}
    while stack:
        parent = next(stack[-1], None)
        if parent is None:
            stack.pop()
            path.pop()
            continue
        if parent == start:
            return [*path, start]
        if parent in seen:
            continue
        seen.add(parent)
        path.append(parent)
        stack.append(iter(parents(parent)))
    return None
