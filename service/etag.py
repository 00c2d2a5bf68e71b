"""ETags are item versions; If-Match guards PUT and DELETE (RFC 9110 §13.1.1)."""

from __future__ import annotations

from dataclasses import dataclass

from service.errors import InvalidInput, VersionMismatch


def format_etag(version: int) -> str:
    return f'"{version}"'


@dataclass(frozen=True, slots=True)
class IfMatch:
    """A parsed If-Match header: `*` (any current version) or a set of versions."""

    raw: str
    versions: frozenset[int] | None  # None means `*`

    @classmethod
    def parse(cls, header: str | None) -> IfMatch | None:
        if header is None:
            return None
        raw = header.strip()
        if raw == "*":
            return cls(raw, None)
        versions = set()
        for part in raw.split(","):
            tag = part.strip().removeprefix("W/")
            # Entity-tags are quoted (RFC 9110 §8.8.3: "3"); a bare 3, as many clients send,
            # means the same here. Anything else is refused rather than guessed at.
            digits = tag[1:-1] if len(tag) >= 2 and tag[0] == tag[-1] == '"' else tag
            if not digits.isdecimal() or len(digits) > 10:
                raise InvalidInput(f"If-Match must be '*' or versions such as '\"3\"', got {raw!r}")
            versions.add(int(digits))
        return cls(raw, frozenset(versions))


def check_if_match(condition: IfMatch | None, current: int | None) -> None:
    """Raise VersionMismatch (412) unless the condition holds for the current version
    (None: the item does not exist, which fails any If-Match)."""
    if condition is None:
        return
    if current is None or (condition.versions is not None and current not in condition.versions):
        raise VersionMismatch(condition.raw, current)
